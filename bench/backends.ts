/**
 * The Keycloak and wac-core emulators for the benchmarks, in a process of their own (started by
 * `startBackends` in support.ts), every request delayed by `BENCH_LATENCY_MS`. Answers the
 * benchmark's questions over the IPC channel: `{id, op, args}` in, `{id, result | error}` out.
 */
import { startKeycloakEmulator } from '../src/emulators/keycloak.js';
import { startWacCoreEmulator } from '../src/emulators/wac-core.js';
import { CLIENT_SECRET, DOMAIN } from './support.js';

const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 20);

const keycloak = await startKeycloakEmulator({
  clients: [{ clientId: 'kitter', clientSecret: CLIENT_SECRET }],
  // No token renewal in the middle of a run unless it lasts over an hour.
  tokenLifetimeSeconds: 3600,
});
const wac = await startWacCoreEmulator({ verifyToken: (token) => keycloak.verifyToken(token) });

/** Empties both emulators, seeds the domain, and sets the latency again. */
function reset(): string {
  keycloak.reset();
  wac.reset();
  keycloak.faults.set({ latency_ms: latencyMs });
  wac.faults.set({ latency_ms: latencyMs });
  return wac.seedDomain({ domain: DOMAIN }).id;
}

let domainId = reset();
let seeded: string[] = [];

const ops: Record<string, (args: Record<string, any>) => unknown> = {
  reset: () => (domainId = reset()),
  domainId: () => domainId,
  resetCalls: () => {
    keycloak.calls.reset();
    wac.calls.reset();
    return null;
  },
  /** How many records each emulator holds, and the requests each answered, by route. */
  counts: () => ({
    keycloakUsers: keycloak.users().length,
    wacUsers: wac.users().length,
    sipMappings: wac.sipMappings().length,
    calls: { keycloak: keycloak.calls.all(), wac: wac.calls.all() },
  }),
  /** `count` users of the domain, in both systems, as kitter would have made them. */
  seedDomainUsers: ({ count }) => {
    seeded = [];
    for (let from = 0; from < count; from += 1000) {
      const batch = Array.from({ length: Math.min(1000, count - from) }, (_, k) => {
        const username = `seeded-${from + k}`;
        return { username, email: `${username}@${DOMAIN}`, attributes: { domain: [DOMAIN] } };
      });
      const ids = keycloak.seedUsers(batch);
      wac.seedUsers(
        batch.map((user, k) => ({
          domain: domainId,
          username: user.username,
          email: user.email,
          externalId: ids[k],
        })),
      );
      seeded.push(...ids);
    }
    return seeded.length;
  },
  /** Of the seeded users, how many were logged out at least once, and in all. */
  logouts: () => {
    const counts = seeded.map((id) => keycloak.logoutCount(id));
    return {
      users: counts.filter((count) => count > 0).length,
      calls: counts.reduce((sum, count) => sum + count, 0),
    };
  },
};

process.on('message', async (message: { id: number; op: string; args: Record<string, any> }) => {
  try {
    const op = ops[message.op];
    if (!op) throw new Error(`unknown op ${message.op}`);
    process.send!({ id: message.id, result: await op(message.args) });
  } catch (err) {
    process.send!({ id: message.id, error: String(err) });
  }
});
process.on('SIGTERM', async () => {
  await wac.close();
  await keycloak.close();
  process.exit(0);
});
process.send!({ ready: true, keycloakUrl: keycloak.url, wacBaseUrl: wac.baseUrl });
