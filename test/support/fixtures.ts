import type { Stack } from './stack.js';

export const PASSWORD = 'Corr3ct-Horse-Battery';
export const SIP_PASSWORD = 'sip-Secret-4242';

/** A full `POST /users` body for `username` in example.com, with `extra` fields on top. */
export function userBody(username: string, extra: Record<string, unknown> = {}) {
  return {
    user: {
      username,
      email: `${username}@example.com`,
      first_name: 'Ada',
      last_name: 'Lovelace',
      credentials: { password: PASSWORD, temporary: false },
      attributes: {
        domain: 'example.com',
        phone_number: '+34612345678',
        capabilities: ['+chat', '-whiteboard'],
        sip_mapping: {
          username: `sip-${username}`,
          password: SIP_PASSWORD,
          sip_domain: 'sip.example.com',
          sip_auth_proxy: 'sip:127.0.0.1:15060',
        },
      },
      ...extra,
    },
  };
}

/** Polls a job until it ends; fails the test when it does not within a few seconds. */
export async function waitForJob(stack: Stack, id: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const answer = await stack.call('GET', `/jobs/${id}`);
    if (answer.body.job && ['succeeded', 'failed'].includes(answer.body.job.state)) {
      return answer.body.job;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`job ${id} did not end within ${timeoutMs} ms`);
}

/** Creates a user and answers its id; fails the test if the create does not succeed. */
export async function createUser(stack: Stack, username: string, extra = {}): Promise<string> {
  const answer = await stack.call('POST', '/users', userBody(username, extra));
  if (answer.status !== 201) {
    throw new Error(`creating ${username}: ${answer.status} ${JSON.stringify(answer.body)}`);
  }
  return answer.body.user.id;
}

/** Waits until `check` holds, polling every 25 ms; fails after `timeoutMs`, naming `what`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
