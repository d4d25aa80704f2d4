import { expect } from 'chai';

import { openApiDocument } from '../../src/api/openapi.js';
import { contractOf } from '../support/contract.js';
import { MalformedRequests, Random, send, type MalformedRequest } from '../support/malformed.js';
import { API_TOKEN, startStack, type Stack } from '../support/stack.js';

/** Another seed gives other requests: `FUZZ_SEED=7 npx mocha test/integration/fuzz.test.ts`. */
const SEED = Number(process.env.FUZZ_SEED ?? 20_250_101);
const REQUESTS = 400;
const IN_FLIGHT = 8;
const REQUEST_TIMEOUT_MS = 5_000;

/** What both emulators hold: a malformed request must leave all of it as it was. */
function stateOf(stack: Stack) {
  return structuredClone({
    keycloakUsers: stack.keycloak.users(),
    domains: stack.wac.domains(),
    wacUsers: stack.wac.users(),
    sipMappings: stack.wac.sipMappings(),
    htable: stack.wac.htable(),
  });
}

describe('malformed requests', function () {
  this.timeout(30_000);
  let stack: Stack;
  const known: Record<string, string> = {};

  before(async () => {
    stack = await startStack({ KITTER_HTABLE_ENABLED: 'true' });

    // Something to read and to leave alone: a domain, a user with a SIP mapping, an entry.
    const domain = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    const user = await stack.call('POST', '/users', {
      user: {
        username: 'ada',
        credentials: { password: 'Corr3ct-Horse-Battery' },
        attributes: {
          domain: 'example.com',
          sip_mapping: { username: 'sip-ada', password: 'sip-Secret-4242' },
        },
      },
    });
    const entry = await stack.call('POST', '/htable', { name: '+34612345678', value: 'Ada' });
    expect([domain.status, user.status, entry.status]).to.deep.equal([201, 201, 201]);

    Object.assign(known, {
      'domains.id': domain.body.domain.id,
      'users.id': user.body.user.id,
      'users.domain': 'example.com',
      'users.username': 'ada',
      'jobs.id': user.headers.get('kitter-job')!,
      'htable.name': encodeURIComponent('+34612345678'),
    });
  });

  after(async () => {
    await stack.close();
  });

  it('answers each in time, never with a 5xx, as documented, and changes nothing', async () => {
    const doc = openApiDocument(stack.config);
    const contract = contractOf(stack.config);
    const requests = new MalformedRequests(doc, contract, API_TOKEN, known).generate(
      new Random(SEED),
      REQUESTS,
    );
    const before = stateOf(stack);
    const failures: string[] = [];

    const check = async (request: MalformedRequest) => {
      const where = `${request.label} (${request.method} ${request.path.slice(0, 80)})`;
      try {
        const answer = await send(stack.service.url!, request, REQUEST_TIMEOUT_MS);
        const body = JSON.stringify(answer.body ?? '').slice(0, 200);
        if (answer.status >= 500) failures.push(`${where}: ${answer.status} ${body}`);
        // Every request for a write is wrong somehow: none may be taken. A logout without a
        // session has nothing to end and is answered as any logout (303, changing nothing).
        const write =
          !['GET', 'HEAD', 'OPTIONS'].includes(request.method) &&
          !request.path.startsWith('/admin/logout');
        if (write && answer.status < 400) failures.push(`${where}: taken, ${answer.status}`);
        for (const problem of contract.problems(request.method, request.path, answer)) {
          failures.push(`${where}: ${problem}`);
        }
      } catch (err) {
        failures.push(`${where}: ${(err as Error).name} ${(err as Error).message}`);
      }
    };

    // A few at a time, as clients would send them.
    const queue = [...requests];
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await check(next);
      }),
    );

    expect(requests.length).to.be.greaterThan(REQUESTS * 0.9);
    expect(failures, `seed ${SEED}:\n${failures.slice(0, 30).join('\n')}`).to.deep.equal([]);
    expect(stateOf(stack)).to.deep.equal(before);
  });
});
