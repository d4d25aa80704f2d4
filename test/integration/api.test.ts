import zlib from 'node:zlib';

import { expect } from 'chai';

import { rawRequest, startStack, type Stack } from '../support/stack.js';

describe('the HTTP API', function () {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    await stack.close();
  });

  describe('authentication', () => {
    it('answers 401 without a token, with a wrong one, and with another scheme', async () => {
      const url = `${stack.service.url}/domains`;

      const none = await fetch(url);
      const wrong = await fetch(url, { headers: { authorization: 'Bearer not-the-token' } });
      const basic = await fetch(url, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });

      for (const answer of [none, wrong, basic]) {
        expect(answer.status).to.equal(401);
        expect(answer.headers.get('www-authenticate')).to.match(/^Bearer/);
        expect((await answer.json()).code).to.equal('unauthorized');
      }
    });

    it('answers the health checks without a token', async () => {
      const live = await fetch(`${stack.service.url}/health/live`);
      const ready = await fetch(`${stack.service.url}/health/ready`);

      expect(live.status).to.equal(200);
      expect(ready.status).to.equal(200);
      expect((await ready.json()).checks).to.deep.equal({
        redis: 'ok',
        keycloak: 'ok',
        wac_core: 'ok',
      });
    });
  });

  describe('bad input', () => {
    it('answers 400 for malformed JSON, never 500', async () => {
      const answer = await stack.call('POST', '/users', '{"user": {"username": "ada",');

      expect(answer.status).to.equal(400);
      expect(answer.body).to.deep.equal({
        error: 'the request body is not valid JSON',
        code: 'validation_failed',
      });
    });

    it('answers 400 to a write without a body, and queues nothing', async () => {
      const domainId = stack.wac.seedDomain({ domain: 'nobody.example' }).id;
      const writes: Array<[string, string]> = [
        ['POST', '/users'],
        ['POST', '/domains'],
        ['PATCH', `/domains/${domainId}`],
        ['PATCH', '/users/00000000-0000-4000-8000-000000000000'],
      ];
      const jobsBefore = (await stack.call('GET', '/jobs')).body.jobs.length;

      for (const [method, path] of writes) {
        const kinds: Array<Record<string, string>> = [{}, { 'content-type': 'application/json' }];
        for (const headers of kinds) {
          const answer = await stack.call(method, path, undefined, headers);

          const what = `${method} ${path} ${JSON.stringify(headers)}`;
          expect(answer.status, what).to.equal(400);
          expect(answer.body.code, what).to.equal('validation_failed');
          // With a JSON content type, no bytes parse as {}: then a field is named as missing.
          expect(answer.body.error, what).to.match(/body is missing|is required|at least/);
        }
      }
      expect((await stack.call('GET', '/jobs')).body.jobs.length).to.equal(jobsBefore);
    });

    it('answers 400 naming what a JSON body that is not an object is', async () => {
      for (const body of ['null', '42', '"ada"']) {
        const answer = await stack.call('POST', '/domains', body);

        expect(answer.status, body).to.equal(400);
        expect(answer.body).to.deep.equal({
          error: 'the request body must be a JSON object',
          code: 'validation_failed',
        });
      }
    });

    it('answers 415 for a body that is not JSON', async () => {
      const answer = await stack.call('POST', '/domains', 'domain=example.com', {
        'content-type': 'application/x-www-form-urlencoded',
      });

      expect(answer.status).to.equal(415);
      expect(answer.body.code).to.equal('unsupported_media_type');
    });

    it('reads a JSON body compressed with gzip, deflate or br', async () => {
      const json = (domain: string) => Buffer.from(JSON.stringify({ domain: { domain } }));
      const codings = {
        gzip: (bytes: Buffer) => zlib.gzipSync(bytes),
        deflate: (bytes: Buffer) => zlib.deflateSync(bytes),
        br: (bytes: Buffer) => zlib.brotliCompressSync(bytes),
      };

      for (const [coding, compress] of Object.entries(codings)) {
        const domain = `${coding}.example`;
        const answer = await stack.call('POST', '/domains', compress(json(domain)), {
          'content-type': 'application/json',
          'content-encoding': coding,
        });

        expect(answer.status, `${coding}: ${JSON.stringify(answer.body)}`).to.equal(201);
        expect(answer.body.domain.domain).to.equal(domain);
      }
      // Content codings are case-insensitive (RFC 9110 §8.4.1).
      const named = [
        ['GZIP', codings.gzip(json('upper-gzip.example'))],
        ['Identity', json('upper-identity.example')],
      ] as const;
      for (const [coding, body] of named) {
        const answer = await stack.call('POST', '/domains', body, {
          'content-type': 'application/json',
          'content-encoding': coding,
        });

        expect(answer.status, `${coding}: ${JSON.stringify(answer.body)}`).to.equal(201);
      }
    });

    it('answers 415 naming a content coding it cannot read, 400 for one that lies', async () => {
      const body = JSON.stringify({ domain: { domain: 'coded.example' } });
      const headers = (coding: string) => ({
        'content-type': 'application/json',
        'content-encoding': coding,
      });

      const zstd = await stack.call('POST', '/domains', body, headers('zstd'));
      const twice = await stack.call('POST', '/domains', body, headers('gzip, br'));
      const plain = await stack.call('POST', '/domains', body, headers('gzip'));

      expect(zstd.status).to.equal(415);
      expect(zstd.body).to.deep.equal({
        error:
          'Content-Encoding "zstd" is not supported: send the body as is, or gzip, deflate or br',
        code: 'unsupported_media_type',
      });
      expect(twice.status).to.equal(415);
      expect(plain.status).to.equal(400);
      expect(plain.body).to.deep.equal({
        error: 'the request body is not gzip data, as its Content-Encoding says',
        code: 'validation_failed',
      });
      expect(stack.wac.domains().map((domain) => domain.domain)).not.to.include('coded.example');
    });

    it('answers 413 for a body over the limit', async () => {
      const huge = { domain: { domain: 'example.com', origins: ['x'.repeat(2 * 1024 * 1024)] } };

      const answer = await stack.call('POST', '/domains', huge);

      expect(answer.status).to.equal(413);
      expect(answer.body.code).to.equal('payload_too_large');
    });

    it('names an unknown key and a wrong type', async () => {
      const answer = await stack.call('POST', '/domains', {
        domain: { domain: 'example.com', enable_anonymous: 'maybe', colour: 'blue' },
      });

      expect(answer.status).to.equal(400);
      expect(answer.body.details).to.deep.equal([
        { path: 'domain.enable_anonymous', message: 'domain.enable_anonymous must be a boolean' },
        { path: 'domain.colour', message: 'domain.colour is not allowed' },
      ]);
    });

    it('answers 404 in the error shape for an unknown path or job', async () => {
      const path = await stack.call('GET', '/nothing-here');
      const job = await stack.call('GET', '/jobs/no-such-job');

      expect(path.status).to.equal(404);
      expect(path.body.code).to.equal('not_found');
      expect(job.status).to.equal(404);
      expect(job.body).to.deep.equal({ error: 'job no-such-job not found', code: 'not_found' });
    });

    it('answers oversized headers and non-HTTP bytes in the JSON error shape', async () => {
      const big = await fetch(`${stack.service.url}/domains`, {
        headers: { 'x-filler': 'x'.repeat(20_000) },
      });
      const garbage = await rawRequest(stack.service.url!, 'NOT HTTP AT ALL\r\n\r\n');

      expect(big.status).to.equal(431);
      expect((await big.json()).code).to.equal('validation_failed');
      expect(garbage).to.match(/^HTTP\/1.1 400 Bad Request/);
      expect(garbage).to.include('"code":"validation_failed"');
    });

    it('answers 405 naming the methods a path takes', async () => {
      const answer = await stack.call('DELETE', '/users');

      expect(answer.status).to.equal(405);
      expect(answer.body.error).to.include('POST');
    });
  });

  describe('domains', () => {
    it('creates a domain, lists it by name or part of it, and refuses a twin', async () => {
      const created = await stack.call('POST', '/domains', {
        domain: { domain: 'Acme.Example.com', origins: ['/.*/'], enable_anonymous: true },
      });

      expect(created.status).to.equal(201);
      expect(created.body.domain).to.deep.include({
        domain: 'acme.example.com',
        origins: ['/.*/'],
        enable_anonymous: true,
        remote_sip_register: false,
        parent: null,
      });
      expect(created.body.domain.id).to.match(/^[0-9a-f]{24}$/);

      const exact = await stack.call('GET', '/domains?name=acme.example.com');
      const part = await stack.call('GET', '/domains?nameContains=ACME');
      const none = await stack.call('GET', '/domains?name=acme');
      expect(exact.body.domains).to.deep.equal([created.body.domain]);
      expect(part.body.domains).to.deep.equal([created.body.domain]);
      expect(none.body.domains).to.deep.equal([]);

      const twin = await stack.call('POST', '/domains', { domain: { domain: 'acme.example.com' } });
      expect(twin.status).to.equal(409);
      expect(twin.body.code).to.equal('conflict');
    });

    it('refuses a domain whose parent does not exist', async () => {
      const answer = await stack.call('POST', '/domains', {
        domain: { domain: 'child.example.org', parent: 'example.org' },
      });

      expect(answer.status).to.equal(400);
      expect(answer.body.code).to.equal('unknown_domain');
    });
  });
});
