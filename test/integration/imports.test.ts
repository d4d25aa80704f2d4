import { spawn } from 'node:child_process';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';
import { parse as parseCsv } from 'csv-parse/sync';
import { stringify as stringifyCsv } from 'csv-stringify/sync';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

import { ImportStore } from '../../src/imports/store.js';
import { earlierRowsOf, packNames, type NameEntry } from '../../src/imports/names.js';
import { until } from '../support/fixtures.js';
import { freePort } from '../support/redis.js';
import { API_TOKEN, rawRequest, startStack, type Stack } from '../support/stack.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/imports/${name}`, import.meta.url), 'utf8');

const CSV = { 'content-type': 'text/csv' };
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function importFile(stack: Stack, csv: string | Buffer, query = '', headers = {}) {
  return stack.call('POST', `/imports${query}`, csv, { ...CSV, ...headers });
}

/** Polls an import until no row is pending; fails the test when that takes too long. */
async function settled(stack: Stack, id: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = (await stack.call('GET', `/imports/${id}`)).body.import;
    if (view.state !== 'validating' && view.pending === 0) return view;
    if (Date.now() > deadline)
      throw new Error(`import ${id} still pending: ${JSON.stringify(view)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs `check` on the store of a new import `id` (two columns, still being read). */
async function withImport(stack: Stack, id: string, check: (store: ImportStore) => Promise<void>) {
  const redis = new Redis(stack.config.redisUrl);
  try {
    const store = new ImportStore(redis, stack.config.queuePrefix);
    const columns = ['username', 'domain'];
    const layout = { columns, headers: columns, delimiter: ',' as const, crlf: false };
    await store.create(id, { dryRun: false, layout });
    await check(store);
  } finally {
    redis.disconnect();
  }
}

const usernames = (stack: Stack) =>
  stack.keycloak
    .users()
    .map((user) => user.username)
    .sort();

describe('bulk CSV imports', function () {
  this.timeout(120_000);
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack();
    stack.wac.seedDomain({ domain: 'example.com' });
  });

  afterEach(async () => {
    await stack.close();
  });

  describe('the files spreadsheets make', () => {
    const cases: Array<[string, string, string[]]> = [
      [
        'a byte order mark, semicolons, CRLF and headers in other cases',
        'bom-semicolon-crlf.csv',
        ['alice', 'bob'],
      ],
      [
        'tabs as delimiter, and capabilities separated by |',
        'tab-delimited.csv',
        ['carol', 'dave'],
      ],
      [
        'quoted fields holding delimiters, quotes and line breaks',
        'quoted-fields.csv',
        ['eve', 'frank'],
      ],
      [
        'blank lines and trailing delimiters',
        'blank-lines-trailing-delimiters.csv',
        ['gina', 'hank'],
      ],
    ];

    for (const [what, file, expected] of cases) {
      it(`imports a file with ${what}`, async () => {
        const answer = await importFile(stack, fixture(file));

        expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
        expect(answer.headers.get('location')).to.equal(`/imports/${answer.body.import.id}`);
        const view = await settled(stack, answer.body.import.id);
        expect(view).to.include({
          state: 'finished',
          total: 2,
          valid: 2,
          invalid: 0,
          succeeded: 2,
        });
        expect(usernames(stack)).to.deep.equal(expected);
        expect(
          stack.wac
            .users()
            .map((user) => user.username)
            .sort(),
        ).to.deep.equal(expected);
      });
    }

    it('refuses a file not in UTF-8, naming the line, unless it names its charset', async () => {
      // What a Spanish Excel saves as "CSV (delimitado por comas)": Windows-1252.
      const ansi = Buffer.from(
        'username;domain;first_name\r\nann;example.com;Ana\r\n' + 'jose;example.com;José\r\n',
        'latin1',
      );

      const refused = await importFile(stack, ansi);
      const named = await importFile(stack, ansi, '', {
        'content-type': 'text/csv; charset=windows-1252',
      });
      const unknown = await importFile(stack, ansi, '', {
        'content-type': 'text/csv; charset=x-no',
      });
      await settled(stack, named.body.import.id);
      // In a multipart upload, the file's part names it.
      const form = new FormData();
      const part = new Blob([ansi], { type: 'text/csv; charset=windows-1252' });
      form.append('file', part, 'ansi.csv');
      const multipart = await fetch(`${stack.service.url}/imports?dry_run=true`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}` },
        body: form,
      });

      expect(refused.status).to.equal(400);
      expect(refused.body.error).to.match(/^the file is not UTF-8 text \(line 3\): save it as/);
      expect(named.status, JSON.stringify(named.body)).to.equal(202);
      expect(multipart.status).to.equal(202);
      expect(((await multipart.json()) as { import: object }).import).to.include({
        valid: 2,
        invalid: 0,
      });
      expect(unknown.status).to.equal(415);
      expect(unknown.body.error).to.include('charset "x-no"');
      const jose = stack.keycloak.users().find((user) => user.username === 'jose');
      expect(jose?.firstName).to.equal('José');
      expect(usernames(stack)).to.deep.equal(['ann', 'jose']);
    });

    it('names the line of a file with CR line ends, and lets a byte order mark win', async () => {
      // Old Mac exports end lines with CR alone; the third line is not UTF-8.
      const mac = Buffer.concat([
        Buffer.from('username,domain\rann,example.com\r'),
        Buffer.from('jos\xe9,example.com\r', 'latin1'),
        Buffer.from('bob,example.com\r'.repeat(20_000)),
      ]);
      // UTF-8 with its byte order mark, sent as Windows-1252: the mark says what it is.
      const marked = Buffer.from('\uFEFFusername,domain,first_name\nzoe,example.com,Zoë\n');

      const refused = await importFile(stack, mac, '?dry_run=true');
      const read = await importFile(stack, marked, '?dry_run=true', {
        'content-type': 'text/csv; charset=windows-1252',
      });

      expect(refused.status).to.equal(400);
      expect(refused.body.error).to.match(/^the file is not UTF-8 text \(line 3\)/);
      expect(read.status, JSON.stringify(read.body)).to.equal(202);
      expect(read.body.import).to.include({ valid: 1, invalid: 0 });
    });

    it('refuses bytes that are not text in the charset the upload names', async () => {
      const csv = Buffer.concat([
        Buffer.from('username,domain\nann,example.com\n'),
        Buffer.from([0x81, 0x0a]),
      ]);

      const answer = await importFile(stack, csv, '?dry_run=true', {
        'content-type': 'text/csv; charset=shift_jis',
      });

      expect(answer.status).to.equal(400);
      expect(answer.body.error).to.match(/^the file is not shift_jis text \(after line 1\)/);
    });

    it('reads UTF-16 with its byte order mark, as Excel saves "Unicode text"', async () => {
      const text = 'username\tdomain\tfirst_name\r\nzoe\texample.com\tZoë\r\n';
      const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
      const be = Buffer.from(le).swap16();

      const little = await importFile(stack, le, '?dry_run=true');
      const big = await importFile(stack, be, '?dry_run=true');

      for (const answer of [little, big]) {
        expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
        expect(answer.body.import).to.include({ total: 1, valid: 1, invalid: 0 });
      }
    });

    it('takes UTF-8 characters that fall across the chunks the file is read in', async () => {
      // Rows until an "é" starts on the last byte of the first 64 KiB read, and ends on the next.
      let csv = 'username,domain,first_name\n';
      let i = 0;
      while (Buffer.byteLength(csv) < 65_536 - 40) csv += `user${i++},example.com,Name\n`;
      const pad = 65_535 - Buffer.byteLength(csv) - Buffer.byteLength(`last,example.com,`);
      csv += `last,example.com,${'x'.repeat(pad)}é\n`;
      expect(Buffer.from(csv).subarray(65_535, 65_537).toString()).to.equal('é');

      const answer = await importFile(stack, csv, '?dry_run=true');

      expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
      expect(answer.body.import).to.include({ total: i + 1, invalid: 0 });
    });

    it('reads a file sent compressed (gzip, br, deflate), as what it holds', async () => {
      const csv = Buffer.from('username,domain\nann,example.com\nbob,example.com\n');

      const gzip = await importFile(stack, zlib.gzipSync(csv), '?dry_run=true', {
        'content-encoding': 'gzip',
      });
      const br = await importFile(stack, zlib.brotliCompressSync(csv), '?dry_run=true', {
        'content-encoding': 'br',
      });
      const deflate = await importFile(stack, zlib.deflateSync(csv), '?dry_run=true', {
        'content-encoding': 'Deflate',
      });

      for (const answer of [gzip, br, deflate]) {
        expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
        expect(answer.body.import).to.include({ total: 2, valid: 2, invalid: 0 });
      }
    });

    it('keeps quoted values whole', async () => {
      const answer = await importFile(stack, fixture('quoted-fields.csv'));
      await settled(stack, answer.body.import.id);

      const eve = stack.keycloak.users().find((user) => user.username === 'eve')!;
      const credentials = stack.wac.sipMappings().map((mapping) => mapping.credential);
      expect(eve.firstName).to.equal('Doe, Eve');
      expect(credentials.map((credential) => credential.password).sort()).to.deep.equal([
        'multi\nline',
        'pa,ss"word',
      ]);
      expect(credentials.map((credential) => credential.authProxy)).to.include(
        'sip:proxy.example.com;transport=tcp',
      );
    });

    it('reports a name Keycloak would refuse as an invalid row, not a failed job', async () => {
      const csv = 'username,first_name,domain\nzoe,"The ""Boss""",example.com\n';

      const answer = await importFile(stack, csv, '?dry_run=true');

      expect(answer.body.import).to.include({ valid: 0, invalid: 1 });
      expect(answer.body.import.first_errors[0].reason).to.match(/^first_name: may not hold/);
    });
  });

  describe('refused files', () => {
    const refusals: Array<[string, string, RegExp]> = [
      ['a column no one knows, naming it', 'unknown-column.csv', /unknown column "nickname"/],
      ['a file without a domain column', 'missing-domain.csv', /no "domain" column/],
      ['a file that is not CSV (an unclosed quote)', 'unclosed-quote.csv', /not valid CSV/],
    ];

    for (const [what, file, message] of refusals) {
      it(`refuses ${what} with 400, queuing nothing`, async () => {
        const answer = await importFile(stack, fixture(file));

        expect(answer.status).to.equal(400);
        expect(answer.body.error).to.match(message);
        expect((await stack.call('GET', '/imports')).body.imports).to.deep.equal([]);
        expect(stack.keycloak.users()).to.deep.equal([]);
      });
    }

    it('refuses a row longer than 64 KiB (one huge cell) with 400, queuing nothing', async () => {
      const huge = 'x'.repeat(200_000);
      const csv = `username,domain,first_name\nada,example.com,Ada\nbob,example.com,"${huge}"\n`;
      const answer = await importFile(stack, csv);

      expect(answer.status).to.equal(400);
      expect(answer.body.error).to.match(
        /^a row is longer than 64 KiB \(line 3\): a cell too long, or a quote left open$/,
      );
      expect((await stack.call('GET', '/imports')).body.imports).to.deep.equal([]);
      expect(stack.keycloak.users()).to.deep.equal([]);
    });

    it('refuses an empty file and a body that is not CSV', async () => {
      const empty = await importFile(stack, '');
      const none = await stack.call('POST', '/imports', undefined, CSV);
      const json = await stack.call('POST', '/imports', { users: [] });

      for (const answer of [empty, none]) {
        expect(answer.status).to.equal(400);
        expect(answer.body.error).to.equal('the file is empty: it needs a header line');
      }
      expect(json.status).to.equal(415);
    });

    it('refuses a file declared larger than the limit with 413, before reading it', async () => {
      // Headers only: the answer must come without the 300 MB the request announces.
      const head = [
        'POST /imports HTTP/1.1',
        'Host: 127.0.0.1',
        `Authorization: Bearer ${API_TOKEN}`,
        'Content-Type: text/csv',
        'Content-Length: 300000000',
      ];
      const answer = await rawRequest(stack.service.url!, `${head.join('\r\n')}\r\n\r\n`);

      expect(answer).to.match(/^HTTP\/1.1 413 /);
      expect(answer).to.include('"code":"payload_too_large"');
    });

    it('refuses an unknown coding, a body not in its coding, a compressed multipart', async () => {
      const csv = 'username,domain\nann,example.com\n';
      const form = new FormData();
      form.append('file', new Blob([zlib.gzipSync(csv)]), 'users.csv');

      const zstd = await importFile(stack, csv, '', { 'content-encoding': 'zstd' });
      const plain = await importFile(stack, csv, '', { 'content-encoding': 'gzip' });
      const multipart = await fetch(`${stack.service.url}/imports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}`, 'content-encoding': 'gzip' },
        body: form,
      });

      expect(zstd.status).to.equal(415);
      expect(zstd.body.error).to.include('"zstd" is not supported');
      expect(plain.status).to.equal(400);
      expect(plain.body.error).to.equal(
        'the request body is not gzip data, as its Content-Encoding says',
      );
      expect(multipart.status).to.equal(415);
      expect(((await multipart.json()) as { error: string }).error).to.include('multipart');
      expect((await stack.call('GET', '/imports')).body.imports).to.deep.equal([]);
    });

    it('holds a compressed file to the limit by what it holds, not by its size sent', async () => {
      const small = await startStack({ KITTER_IMPORT_MAX_BYTES: String(64 * 1024) });
      try {
        // 200 KiB of rows that gzip to a few hundred bytes.
        const csv = `username,domain\n${'ann,example.com\n'.repeat(200 * 64)}`;

        const answer = await importFile(small, zlib.gzipSync(csv), '', {
          'content-encoding': 'gzip',
        });

        expect(answer.status).to.equal(413);
        expect(answer.body).to.deep.equal({
          error: 'the request body is larger than 64 KiB',
          code: 'payload_too_large',
        });
        expect((await small.call('GET', '/imports')).body.imports).to.deep.equal([]);
      } finally {
        await small.close();
      }
    });

    it('answers 405 to another method on /imports, whatever the body', async () => {
      const answer = await stack.call('PUT', '/imports', 'username,domain\n', CSV);

      expect(answer.status).to.equal(405);
      expect(answer.headers.get('allow')).to.include('POST');
    });
  });

  describe('rows', () => {
    it('reports invalid rows with their reasons and queues the valid ones', async () => {
      const answer = await importFile(stack, fixture('mixed-valid-invalid.csv'));
      const view = await settled(stack, answer.body.import.id);

      expect(view).to.include({ total: 6, valid: 2, invalid: 4, succeeded: 2, failed: 0 });
      expect(view.first_errors).to.deep.equal([
        { row: 3, reason: 'username "ivan" is on row 2 already' },
        { row: 4, reason: 'username: length must be at least 3 characters long' },
        { row: 5, reason: 'email: must be a valid email' },
        { row: 6, reason: 'domain "nowhere.org" does not exist' },
      ]);
      expect(usernames(stack)).to.deep.equal(['ivan', 'leo']);
      expect(stack.keycloak.checkPassword(stack.keycloak.users()[0].id, 'Secret-Pass-1')).to.equal(
        true,
      );
      expect(stack.wac.sipMappings()[0].credential.password).to.equal('Sip-Secret-1');
    });

    it('finds a username repeated chunks later, and drops the file’s usernames after', async () => {
      const lines = ['username,domain'];
      for (let i = 0; i < 1200; i++) lines.push(`far${i},example.com`);
      lines.push('FAR0,example.com', 'far1199,example.com');
      // Repeated and in a domain that does not exist: the repeat is the reason, as for a
      // single request; a row refused is not an earlier row for the rows after it.
      lines.push('far5,nowhere.org', 'ghost,nowhere.org', 'ghost,example.com');

      const answer = await importFile(stack, `${lines.join('\n')}\n`, '?dry_run=true');

      expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
      expect(answer.body.import).to.include({ total: 1205, valid: 1201, invalid: 4 });
      expect(answer.body.import.first_errors).to.deep.equal([
        { row: 1202, reason: 'username "far0" is on row 2 already' },
        { row: 1203, reason: 'username "far1199" is on row 1201 already' },
        { row: 1204, reason: 'username "far5" is on row 7 already' },
        { row: 1205, reason: 'domain "nowhere.org" does not exist' },
      ]);
      const redis = new Redis(stack.config.redisUrl);
      try {
        const kept = await redis.keys(`${stack.config.queuePrefix}:import:*:names*`);
        expect(kept).to.deep.equal([]);
      } finally {
        redis.disconnect();
      }
    });

    it('checks usernames per read: a round trip tried again finds its own rows', async () => {
      const redis = new Redis(stack.config.redisUrl);
      const entry = (name: string, row: number, register = true) => ({ name, row, register });
      try {
        const store = new ImportStore(redis, stack.config.queuePrefix);
        const claim = async (read: string, entries: NameEntry[]) =>
          earlierRowsOf(
            entries.length,
            await store.claimNames('again-1', read, packNames(entries)),
          );
        const chunk = [entry('ana', 2), entry('bo', 3, false), entry('ana', 4), entry('bo', 5)];

        expect(await claim('read-a', chunk)).to.deep.equal([0, 0, 2, 0]);
        expect(await claim('read-a', chunk)).to.deep.equal([0, 0, 2, 0]);
        // A row before the one registered is not its duplicate; another read starts afresh.
        expect(await claim('read-a', [entry('bo', 4)])).to.deep.equal([0]);
        expect(await claim('read-b', [entry('bo', 9)])).to.deep.equal([0]);
        expect(await claim('read-a', [entry('bo', 9)])).to.deep.equal([5]);
        await store.forgetNames('again-1', 'read-a');
        expect(await claim('read-a', [entry('bo', 9)])).to.deep.equal([0]);
        await store.forgetNames('again-1', 'read-a');
        await store.forgetNames('again-1', 'read-b');
      } finally {
        redis.disconnect();
      }
    });

    it('writes rejected and failed rows to errors.csv, without passwords', async () => {
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
      const answer = await importFile(stack, fixture('mixed-valid-invalid.csv'));
      const view = await settled(stack, answer.body.import.id);
      stack.wac.faults.reset();

      const report = await stack.call('GET', `/imports/${view.id}/errors.csv`);

      expect(view).to.include({ valid: 2, invalid: 4, succeeded: 0, failed: 2 });
      expect(report.status).to.equal(200);
      expect(report.headers.get('content-type')).to.match(/^text\/csv/);
      const lines = (report.body as string)
        .replace(/^\uFEFF/, '')
        .trim()
        .split('\n');
      expect(lines[0]).to.match(/^row,username,email,.*,reason$/);
      expect(lines).to.have.length(7);
      expect(report.body).not.to.include('Secret-Pass');
      expect(report.body).not.to.include('Sip-Secret');
      expect(lines[1]).to.match(/^2,ivan,ivan@example.com,.*wac-core rejected create user/);
      expect(stack.keycloak.users()).to.deep.equal([]);
    });

    it('takes the fixed error report back as an import, and every row then succeeds', async () => {
      const first = await importFile(stack, fixture('mixed-valid-invalid.csv'));
      await settled(stack, first.body.import.id);
      const report = (await stack.call('GET', `/imports/${first.body.import.id}/errors.csv`)).body;

      // What an operator does: fix each row, drop the row and reason columns, send it back.
      const rows = parseCsv(report as string, { bom: true, columns: true }) as Array<
        Record<string, string>
      >;
      const fixes: Record<string, Record<string, string>> = {
        '3': { username: 'ivan2' },
        '4': { username: 'jay' },
        '5': { email: 'judy@example.com' },
        '6': { domain: 'example.com' },
      };
      const fixed = rows.map(({ row, reason: _reason, ...cells }) => ({ ...cells, ...fixes[row] }));
      const again = await importFile(stack, stringifyCsv(fixed, { header: true }));
      const view = await settled(stack, again.body.import.id);

      expect(rows.map((row) => row.row)).to.deep.equal(['3', '4', '5', '6']);
      expect(view, JSON.stringify(view)).to.include({ valid: 4, invalid: 0, succeeded: 4 });
      expect(usernames(stack)).to.deep.equal(['ivan', 'ivan2', 'jay', 'judy', 'kim', 'leo']);
    });

    for (const [name, delimiter] of [
      ['semicolons', ';'],
      ['tabs', '\t'],
    ] as const) {
      it(`writes errors.csv with ${name} for a file with ${name}, and takes it back`, async () => {
        const file = [
          ['Username', 'EMAIL', 'password', ' Domain '],
          ['ann', 'ann@example.com', 'Secret-Pass-1', 'example.com'],
          ['bob', 'not; an email', 'Secret-Pass-2', 'example.com'],
        ];
        const csv = stringifyCsv(file, { delimiter, record_delimiter: 'windows', bom: true });
        const first = await importFile(stack, csv);
        await settled(stack, first.body.import.id);

        const report = (await stack.call('GET', `/imports/${first.body.import.id}/errors.csv`))
          .body as string;
        const lines = report.replace(/^\uFEFF/, '').split('\r\n');
        const rows = parseCsv(report, { bom: true, columns: true, delimiter }) as Array<
          Record<string, string>
        >;
        const fixed = rows.map(({ row: _row, reason: _reason, ...cells }) => ({
          ...cells,
          EMAIL: 'bob@example.com',
        }));
        const again = await importFile(stack, stringifyCsv(fixed, { header: true, delimiter }));
        const view = await settled(stack, again.body.import.id);

        // The file's own names, delimiter and line ends.
        expect(lines[0]).to.equal(['row', 'Username', 'EMAIL', 'Domain', 'reason'].join(delimiter));
        expect(lines).to.have.length(3);
        expect(rows).to.have.length(1);
        expect(rows[0]).to.include({ row: '3', Username: 'bob', EMAIL: 'not; an email' });
        expect(view, JSON.stringify(view)).to.include({ valid: 1, invalid: 0, succeeded: 1 });
        expect(usernames(stack)).to.deep.equal(['ann', 'bob']);
      });
    }

    it('takes a file of rows near the 64 KiB limit, valid and not, a few at a time', async () => {
      // Valid rows carry a long capabilities cell (empty entries are dropped); the others a
      // first name far too long. 500 rows of either would outgrow the reader's heap at once.
      const lines = ['username,domain,first_name,capabilities'];
      for (let i = 0; i < 1000; i++) {
        lines.push(
          i % 2 === 0
            ? `big${i},example.com,Big,+chat${'|'.repeat(60_000)}`
            : `long${i},example.com,${'x'.repeat(60_000)},+chat`,
        );
      }
      const answer = await importFile(stack, `${lines.join('\n')}\n`, '?dry_run=false');

      expect(answer.status).to.equal(202);
      expect(answer.body.import).to.include({ total: 1000, valid: 500, invalid: 500 });
    });

    it("takes a spreadsheet's yes and no, and names the words when a cell is neither", async () => {
      const csv = [
        'username;domain;enabled;email_verified;temporary;password',
        'ana;example.com;VERDADERO;Falso;sí;Pass-word-1',
        'bea;example.com;yes;0;S\u0069\u0301;Pass-word-2',
        'cris;example.com;maybe;1;;',
        'dani;example.com;1;1;quizá;',
      ].join('\r\n');

      const answer = await importFile(stack, csv);
      await settled(stack, answer.body.import.id);

      expect(answer.body.import).to.include({ valid: 2, invalid: 2 });
      expect(answer.body.import.first_errors).to.deep.equal([
        {
          row: 4,
          reason: 'enabled: "maybe" is not one of true/false, yes/no, 1/0, sí/no, verdadero/falso',
        },
        {
          row: 5,
          reason:
            'temporary: "quizá" is not one of true/false, yes/no, 1/0, sí/no, verdadero/falso',
        },
      ]);
      const users = stack.keycloak.users();
      expect(users.map((user) => [user.username, user.enabled, user.emailVerified])).to.deep.equal([
        ['ana', true, false],
        ['bea', true, false],
      ]);
    });

    it('numbers rows as a spreadsheet does, blank lines included', async () => {
      const csv = '\nusername,domain\nann,example.com\n\nb,example.com\n';

      const answer = await importFile(stack, csv, '?dry_run=true');

      expect(answer.body.import.first_errors).to.deep.equal([
        { row: 5, reason: 'username: length must be at least 3 characters long' },
      ]);
    });

    it('validates the whole file and creates nothing on a dry run', async () => {
      const answer = await importFile(stack, fixture('mixed-valid-invalid.csv'), '?dry_run=true');

      expect(answer.status).to.equal(202);
      expect(answer.body.import).to.include({
        dry_run: true,
        state: 'finished',
        total: 6,
        valid: 2,
        invalid: 4,
        pending: 0,
      });
      expect(stack.keycloak.users()).to.deep.equal([]);
      expect(stack.wac.users()).to.deep.equal([]);
    });

    it('takes the file as the multipart field "file"', async () => {
      const form = new FormData();
      form.set('file', new Blob([fixture('tab-delimited.csv')], { type: 'text/csv' }), 'users.csv');
      const response = await fetch(`${stack.service.url}/imports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.env.KITTER_API_TOKENS}` },
        body: form,
      });
      const body = await response.json();

      expect(response.status).to.equal(202);
      expect(body.import.filename).to.equal('users.csv');
      await settled(stack, body.import.id);
      expect(usernames(stack)).to.deep.equal(['carol', 'dave']);
    });
  });

  describe('large imports', () => {
    const file = (count: number, prefix = 'user') =>
      ['username,email,domain,password']
        .concat(
          Array.from(
            { length: count },
            (_, i) => `${prefix}${i},${prefix}${i}@example.com,example.com,Pass-${i}-word`,
          ),
        )
        .join('\n');

    it('imports 10 000 rows end to end, every one in both systems', async function () {
      this.timeout(300_000);
      await stack.close();
      stack = await startStack({ KITTER_WORKER_CONCURRENCY: '50', LOG_LEVEL: 'warn' });
      stack.wac.seedDomain({ domain: 'example.com' });

      const answer = await importFile(stack, file(10_000));
      const view = await settled(stack, answer.body.import.id, 280_000);

      expect(view).to.include({
        state: 'finished',
        total: 10_000,
        valid: 10_000,
        succeeded: 10_000,
        failed: 0,
        pending: 0,
      });
      expect(stack.keycloak.users()).to.have.length(10_000);
      expect(stack.wac.users()).to.have.length(10_000);
    });

    it('cancels: rows not started are dropped, rows done stay done', async () => {
      stack.keycloak.faults.set({ latency_ms: 20, paths: '^POST /admin' });
      const answer = await importFile(stack, file(500));

      await new Promise((resolve) => setTimeout(resolve, 300));
      const asked = Date.now();
      const cancelled = await stack.call('DELETE', `/imports/${answer.body.import.id}`);
      const answeredInMs = Date.now() - asked;
      const view = await settled(stack, answer.body.import.id);

      expect(cancelled.status).to.equal(200);
      // At once, not after the job that clears the queue (it once waited for it, 10 s).
      expect(answeredInMs).to.be.below(2000);
      expect(cancelled.body.import.state).to.equal('cancelled');
      expect(cancelled.headers.get('kitter-job')).to.equal(`imp-${answer.body.import.id}-cancel`);
      expect(view.state).to.equal('cancelled');
      expect(view.cancelled).to.be.greaterThan(0);
      expect(view.succeeded).to.be.greaterThan(0);
      expect(view.succeeded + view.failed + view.cancelled).to.equal(500);
      expect(stack.keycloak.users()).to.have.length(view.succeeded);
      const again = await stack.call('DELETE', `/imports/${answer.body.import.id}`);
      expect(again.status).to.equal(200);
      expect(again.body.import).to.deep.include({ state: 'cancelled', cancelled: view.cancelled });
    });

    it('drops rows of a cancelled import that workers reach before the clearing job', async () => {
      // 400 rows, 20 at a time, 100 ms each: 2 s at least, well past the second a worker may
      // take to see the cancel.
      stack.keycloak.faults.set({ latency_ms: 100, paths: '^POST /admin' });
      const answer = await importFile(stack, file(400));
      const id = answer.body.import.id;
      await new Promise((resolve) => setTimeout(resolve, 300));

      // The cancel's first half alone, as the API makes it: no job clears the queue.
      const redis = new Redis(stack.config.redisUrl);
      try {
        expect(await new ImportStore(redis, stack.config.queuePrefix).cancel(id)).to.equal(
          'cancelled',
        );
      } finally {
        redis.disconnect();
      }
      const view = await settled(stack, id);

      expect(view.state).to.equal('cancelled');
      expect(view.cancelled).to.be.greaterThan(0);
      expect(view.succeeded + view.failed + view.cancelled).to.equal(400);
      expect(stack.keycloak.users()).to.have.length(view.succeeded);
    });

    it('lets rows that ran before a cancel finish or undo, never leaving half a user', async () => {
      await stack.close();
      stack = await startStack({ KITTER_JOB_BACKOFF_MS: '1500' });
      stack.wac.seedDomain({ domain: 'example.com' });
      // Each row makes its Keycloak user, then fails on wac-core and waits for its retry.
      stack.wac.faults.set({ error_rate: 1, error_status: 502, paths: '^POST /sapi/users' });
      const answer = await importFile(stack, file(3));
      await until('every row to have tried once', () => stack.keycloak.users().length === 3);

      const cancelled = await stack.call('DELETE', `/imports/${answer.body.import.id}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      stack.wac.faults.reset();
      const view = await settled(stack, answer.body.import.id);

      expect(cancelled.status).to.equal(200);
      // Neither dropped by the clearing job nor by a worker: they had made records.
      expect(view).to.include({ state: 'cancelled', cancelled: 0, succeeded: 3 });
      expect(stack.keycloak.users()).to.have.length(3);
      expect(stack.wac.users()).to.have.length(3);
    });

    it('rides out a blip of Redis while it queues a file (its connections cut)', async () => {
      const sent = importFile(stack, file(5000));
      // Once rows are being queued, every client's connection is cut (the API's among them),
      // ten times over 300 ms: writes in flight fail, and others find no connection.
      const admin = new Redis(stack.config.redisUrl);
      try {
        const queued = `${stack.config.queuePrefix}:provisioning:prioritized`;
        await until('rows to be queued', async () => (await admin.zcard(queued)) > 0);
        for (let cut = 0; cut < 10; cut++) {
          await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
          await new Promise((resolve) => setTimeout(resolve, 30));
        }
        expect(await admin.zcard(queued)).to.be.below(5000);
      } finally {
        admin.disconnect();
      }
      const answer = await sent;

      expect(answer.status).to.equal(202);
      expect(answer.body.import).to.include({ valid: 5000, invalid: 0 });
      // Every row queued once: the workers' own connections were cut too, and how soon they
      // pick up again is theirs (a job caught mid-step waits out its lock), not the import's.
      const connection = new Redis(stack.config.redisUrl);
      const provisioning = new Queue('provisioning', {
        connection,
        prefix: stack.config.queuePrefix,
      });
      try {
        const counts = await provisioning.getJobCounts();
        expect(Object.values(counts).reduce((sum, n) => sum + n, 0)).to.equal(5000);
      } finally {
        await provisioning.close();
        connection.disconnect();
      }
    });

    it('shows the rows read so far while a large file is still being read', async function () {
      this.timeout(120_000);
      const rows = 30_000;
      const seen: Array<{ total: number; valid: number; invalid: number }> = [];
      let reading = true;
      const upload = importFile(stack, file(rows, 'soFar'), '?dry_run=true').finally(() => {
        reading = false;
      });
      while (reading) {
        const { imports } = (await stack.call('GET', '/imports')).body;
        const view = imports.find((one: { state: string }) => one.state === 'validating');
        if (view) seen.push({ total: view.total, valid: view.valid, invalid: view.invalid });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect((await upload).body.import).to.include({ total: rows, valid: rows, invalid: 0 });

      const between = seen.filter(({ total }) => total > 0 && total < rows);
      expect(between.length, JSON.stringify(seen)).to.be.greaterThan(0);
      for (const [i, counts] of seen.entries()) {
        expect(counts.valid + counts.invalid).to.equal(counts.total);
        if (i > 0) expect(counts.total).to.be.at.least(seen[i - 1].total);
      }
    });

    it('raises the counts read so far, never lowers them, and keeps the totals', async () => {
      await withImport(stack, 'so-far-1', async (store) => {
        await store.readSoFar('so-far-1', { total: 1000, valid: 990, invalid: 10 });
        // A chunk written again after a later one (a round trip tried again).
        await store.readSoFar('so-far-1', { total: 500, valid: 495, invalid: 5 });
        expect(await store.get('so-far-1')).to.include({
          state: 'validating',
          total: 1000,
          valid: 990,
          invalid: 10,
          pending: 990,
        });

        await store.uploaded('so-far-1', { total: 1200, valid: 1188, invalid: 12 });
        await store.readSoFar('so-far-1', { total: 1500, valid: 1500, invalid: 0 });
        expect(await store.get('so-far-1')).to.include({ state: 'running', total: 1200 });
        await store.cancel('so-far-1');
      });
    });

    it('keeps a cancel that lands while the file is still being read', async () => {
      await withImport(stack, 'race-1', async (store) => {
        expect(await store.cancel('race-1')).to.equal('cancelled');
        await store.uploaded('race-1', { total: 3, valid: 3, invalid: 0 });
        expect(await store.get('race-1')).to.include({ state: 'cancelled', valid: 3 });
        expect(await store.cancel('race-1')).to.equal('already');
        // One that has expired is not brought back by a cancel.
        expect(await store.cancel('never-was')).to.equal('missing');
        expect(await store.get('never-was')).to.equal(undefined);
      });
    });

    it('answers 409 to a cancel of an import that has finished', async () => {
      const answer = await importFile(stack, file(3));
      await settled(stack, answer.body.import.id);

      const cancel = await stack.call('DELETE', `/imports/${answer.body.import.id}`);

      expect(cancel.status).to.equal(409);
      expect(cancel.body.error).to.include('has finished');
    });

    it('takes five files sent at once (read two at a time), queuing every row', async () => {
      const files = [0, 1, 2, 3, 4].map((n) => {
        const rows = Array.from({ length: 50 }, (_, i) => `f${n}u${i},example.com`);
        return ['username,domain', ...rows].join('\n');
      });
      const answers = await Promise.all(files.map((csv) => importFile(stack, csv)));

      for (const answer of answers) {
        expect(answer.status).to.equal(202);
        expect(answer.body.import).to.include({ total: 50, valid: 50, invalid: 0 });
      }
      const views = await Promise.all(answers.map((a) => settled(stack, a.body.import.id)));
      expect(views.map((view) => view.succeeded)).to.deep.equal([50, 50, 50, 50, 50]);
      expect(stack.keycloak.users()).to.have.length(250);
    });

    it('lets a single POST /users through while an import is queued', async () => {
      stack.keycloak.faults.set({ latency_ms: 20, paths: '^POST /admin' });
      const answer = await importFile(stack, file(1000));

      const single = await stack.call('POST', '/users', {
        user: { username: 'urgent', attributes: { domain: 'example.com' } },
      });
      const during = (await stack.call('GET', `/imports/${answer.body.import.id}`)).body.import;

      expect(single.status).to.equal(201);
      expect(during.pending).to.be.greaterThan(500);
      await stack.call('DELETE', `/imports/${answer.body.import.id}`);
    });

    it('queues no row twice when the same file is sent again under the same key', async () => {
      const headers = { 'idempotency-key': 'customer-42-batch-1' };

      const first = await importFile(stack, file(50), '', headers);
      const again = await importFile(stack, file(50), '', headers);
      const view = await settled(stack, first.body.import.id);

      expect(again.status).to.equal(202);
      expect(again.headers.get('idempotent-replayed')).to.equal('true');
      expect(again.body.import.id).to.equal(first.body.import.id);
      expect(view).to.include({ valid: 50, succeeded: 50 });
      expect(stack.keycloak.users()).to.have.length(50);
    });

    it('refuses a key used before with another file, or for a dry run of the file', async () => {
      const headers = { 'idempotency-key': 'customer-43-batch-1' };
      const dry = await importFile(stack, file(5), '?dry_run=true', headers);
      expect(dry.status).to.equal(202);

      const real = await importFile(stack, file(5), '', headers);
      const other = await importFile(stack, file(6), '?dry_run=true', headers);

      for (const answer of [real, other]) {
        expect(answer.status).to.equal(409);
        expect(answer.body).to.deep.equal({
          error: 'this Idempotency-Key was already used with a different request',
          code: 'conflict',
        });
      }
      expect(stack.keycloak.users()).to.have.length(0);
    });
  });

  describe('kitter import', () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', 'src/main.ts', 'import', ...args],
          {
            cwd: ROOT,
            env: { PATH: process.env.PATH ?? '' },
          },
        );
        let out = '';
        child.stdout.on('data', (chunk) => (out += chunk));
        child.stderr.on('data', (chunk) => (out += chunk));
        child.on('exit', (code) => resolve({ code, out }));
      });

    it('uploads, waits, sums up, writes FILE.errors.csv, and exits 1 for bad rows', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const file = path.join(dir, 'customers.csv');
      await writeFile(file, fixture('mixed-valid-invalid.csv'));
      const token = stack.env.KITTER_API_TOKENS;

      const result = await run([file, '--url', stack.service.url!, '--token', token, '--wait']);

      expect(result.code, result.out).to.equal(1);
      expect(result.out).to.match(/rows: 6, valid 2, invalid 4/);
      expect(result.out).to.match(/succeeded 2, failed 0, cancelled 0, pending 0/);
      const report = await readFile(`${file}.errors.csv`, 'utf8');
      expect(report.trim().split('\n')).to.have.length(5);
      expect(usernames(stack)).to.deep.equal(['ivan', 'leo']);
      await rm(dir, { recursive: true, force: true });
    });

    it('exits 0 when every row succeeds, and 2 for a file the API refuses', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const good = path.join(dir, 'good.csv');
      const bad = path.join(dir, 'bad.csv');
      await writeFile(good, fixture('tab-delimited.csv'));
      await writeFile(bad, fixture('unknown-column.csv'));
      // A report left by an earlier run of the same file, which this run must not leave behind.
      await writeFile(`${good}.errors.csv`, 'row,username,reason\n2,old,an earlier run\n');
      const common = ['--url', stack.service.url!, '--token', stack.env.KITTER_API_TOKENS];

      const ok = await run([good, ...common, '--wait', '--key', 'cli-batch-7']);
      const again = await run([good, ...common, '--key', 'cli-batch-7']);
      const refused = await run([bad, ...common]);
      const closed = `http://127.0.0.1:${await freePort()}`;
      const nowhere = await run([good, '--url', closed, '--token', 'x']);
      const help = await run(['--help']);

      expect(ok.code, ok.out).to.equal(0);
      expect(ok.out).to.include('removed');
      expect(await readFile(`${good}.errors.csv`).catch(() => 'gone')).to.equal('gone');
      expect(again.code, again.out).to.equal(0);
      expect(again.out).to.include('(sent before under this key)');
      expect(stack.keycloak.users()).to.have.length(2);
      expect(refused.code, refused.out).to.equal(2);
      expect(refused.out).to.include('unknown column "nickname"');
      expect(nowhere.code, nowhere.out).to.equal(2);
      expect(nowhere.out).to.match(/fetch failed: .*ECONNREFUSED/);
      expect(nowhere.out).to.include(`nothing answered at ${closed}: is kitter running there?`);
      expect(nowhere.out).not.to.include('--key');
      expect(refused.out).not.to.include('--key');
      expect(help.code, help.out).to.equal(0);
      expect(help.out).to.include('--dry-run');
      await rm(dir, { recursive: true, force: true });
    });

    it('gives an import a key of its own: the file sent again under it queues no row', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const file = path.join(dir, 'good.csv');
      await writeFile(file, fixture('tab-delimited.csv'));
      const common = ['--url', stack.service.url!, '--token', stack.env.KITTER_API_TOKENS];

      const first = await run([file, ...common, '--wait']);
      const key = /under the key ([0-9a-f-]{36})/.exec(first.out)?.[1];
      const again = await run([file, ...common, '--key', key ?? 'none']);
      const dry = await run([file, ...common, '--dry-run']);

      expect(first.code, first.out).to.equal(0);
      expect(key, first.out).to.be.a('string');
      expect(again.code, again.out).to.equal(0);
      expect(again.out).to.include('(sent before under this key)');
      expect(stack.keycloak.users()).to.have.length(2);
      // A dry run queues nothing, and goes under no key: the real import may take its own.
      expect(dry.out).not.to.include('under the key');
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses what it cannot send before sending, and never prints the token', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const file = path.join(dir, 'good.csv');
      await writeFile(file, fixture('tab-delimited.csv'));
      const url = stack.service.url!;
      const token = stack.env.KITTER_API_TOKENS;

      const schemeless = await run([file, '--url', url.replace('http://', ''), '--token', token]);
      const directory = await run([dir, '--url', url, '--token', token]);
      const missing = await run([path.join(dir, 'none.csv'), '--url', url, '--token', token]);
      const broken = await run([file, '--url', url, '--token', 'sec-ret\nline']);
      await rm(dir, { recursive: true, force: true });

      expect(schemeless.out).to.include('is not an http:// or https:// address');
      expect(directory.out).to.include('is not a file');
      expect(missing.out).to.include('no such file');
      expect(broken.out).to.include('the token holds characters a header cannot');
      expect(broken.out).not.to.include('sec-ret');
      for (const result of [schemeless, directory, missing, broken]) {
        expect(result.code, result.out).to.equal(2);
        expect(result.out).not.to.include('--key');
      }
      expect(stack.keycloak.users()).to.deep.equal([]);
    });

    it('says how to go on under the same key when the upload is cut off', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const file = path.join(dir, 'big.csv');
      await writeFile(file, `username,domain\n${'someone,example.com\n'.repeat(50_000)}`);
      // A server that takes the first bytes of the upload, then drops the connection.
      const cutter = net.createServer((socket) => socket.once('data', () => socket.destroy()));
      await new Promise<void>((resolve) => cutter.listen(0, '127.0.0.1', resolve));
      const { port } = cutter.address() as net.AddressInfo;

      const cut = await run([file, '--url', `http://127.0.0.1:${port}`, '--token', 't']);
      cutter.close();
      await rm(dir, { recursive: true, force: true });

      expect(cut.code, cut.out).to.equal(2);
      const key = /under the key ([0-9a-f-]{36})/.exec(cut.out)?.[1];
      expect(cut.out).to.include(`run the same command again with --key ${key} added`);
    });

    it('names the charset a file needs, and reads it in that charset', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-cli-'));
      const file = path.join(dir, 'ansi.csv');
      await writeFile(
        file,
        Buffer.from('username;domain;first_name\r\njose;example.com;José\r\n', 'latin1'),
      );
      const common = [file, '--url', stack.service.url!, '--token', stack.env.KITTER_API_TOKENS];

      const unnamed = await run([...common, '--dry-run']);
      const named = await run([...common, '--charset', 'windows-1252', '--wait']);
      await rm(dir, { recursive: true, force: true });

      expect(unnamed.code, unnamed.out).to.equal(2);
      expect(unnamed.out).to.include('not UTF-8 text (line 2)');
      expect(unnamed.out).to.include('--charset windows-1252');
      expect(named.code, named.out).to.equal(0);
      expect(stack.keycloak.users().map((user) => user.firstName)).to.deep.equal(['José']);
    });
  });
});
