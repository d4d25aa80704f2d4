/**
 * The baselines: kitter's own clients making the same Keycloak and wac-core calls as the jobs,
 * for the same users and with the same concurrency, directly, with no queue. Runs in a child
 * process of its own (`startChild('direct.ts')`), as a worker does.
 */
import { KeycloakClient } from '../src/clients/keycloak.js';
import { TokenSource } from '../src/clients/token-source.js';
import { WacCoreClient } from '../src/clients/wac-core.js';
import { mapLimited } from '../src/limit.js';
import {
  ownerUriOf,
  splitSecrets,
  toApiUser,
  toKeycloakUser,
  toSipMapping,
  toWacUser,
  type UserInput,
} from '../src/model/users.js';
import { CLIENT_SECRET, DOMAIN, serveChild, userInput } from './support.js';

export interface DirectInput {
  keycloakUrl: string;
  wacBaseUrl: string;
  /** `provision`: users `from`..`to` of `run`; `logout`: every user of the domain. */
  task: 'provision' | 'provision-one-by-one' | 'logout';
  run?: string;
  from?: number;
  to?: number;
  concurrency: number;
}

export interface DirectResult {
  /** Wall-clock ms (Date.now) when the timed part started and ended. */
  started: number;
  ended: number;
  done: number;
  /** For `provision-one-by-one`: each user's time, in ms. */
  latencies?: number[];
}

function clients(input: DirectInput) {
  const keycloakOptions = {
    url: input.keycloakUrl,
    realm: 'quobis',
    clientId: 'kitter',
    clientSecret: CLIENT_SECRET,
    timeoutMs: 10_000,
  };
  const tokens = new TokenSource(keycloakOptions);
  return {
    tokens,
    keycloak: new KeycloakClient(tokens, keycloakOptions),
    wac: new WacCoreClient(tokens, { url: input.wacBaseUrl, timeoutMs: 10_000 }),
  };
}

type Clients = ReturnType<typeof clients>;

/** What a `user.create` job does (src/workers/user-create.ts), step for step, minus Redis. */
async function createUser({ keycloak, wac }: Clients, user: UserInput, mark: string) {
  const { spec, secrets } = splitSecrets(user);
  const domain = await wac.findDomainByName(spec.attributes.domain);
  if (!domain) throw new Error(`no domain ${spec.attributes.domain}`);

  const keycloakId = await keycloak.createUser(toKeycloakUser(spec, secrets, mark));
  const wacUserId = (await wac.createUser(toWacUser(spec, domain.id, keycloakId))).id;
  const mapping = toSipMapping(spec, secrets, wacUserId);
  if (mapping) await wac.createSipMapping(mapping);

  // The job reads the user back from both systems for its result, the synchronous answer.
  const [keycloakUser, wacUser, sip] = await Promise.all([
    keycloak.getUser(keycloakId),
    wac.findUser(domain.id, spec.username),
    mapping ? wac.findSipMapping(ownerUriOf(wacUserId)) : undefined,
  ]);
  return toApiUser(keycloakUser!, wacUser, sip);
}

/** What a `domain.logout` job does: count, then every user, `concurrency` logouts in flight. */
async function logoutDomain({ keycloak }: Clients, concurrency: number): Promise<number> {
  const filter = { attributes: { domain: DOMAIN } };
  await keycloak.countUsers(filter);

  // Pages are read one after another, ahead of the logouts, which never wait for a page.
  const ids: string[] = [];
  let listed = false;
  let waiting: Array<() => void> = [];
  const wake = () => {
    const woken = waiting;
    waiting = [];
    for (const resolve of woken) resolve();
  };
  const reading = (async () => {
    for (let first = 0; ; first += 100) {
      const page = await keycloak.findUsers({ ...filter, first, max: 100 });
      ids.push(...page.map((user) => user.id!));
      wake();
      if (page.length < 100) break;
    }
    listed = true;
    wake();
  })();

  let next = 0;
  const lane = async () => {
    for (;;) {
      if (next < ids.length) await keycloak.logout(ids[next++]);
      else if (listed) return;
      else await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  await Promise.all([reading, ...Array.from({ length: concurrency }, lane)]);
  return ids.length;
}

serveChild(async (input: DirectInput): Promise<DirectResult> => {
  const all = clients(input);
  // As a worker has by the time it takes jobs: a token, and connections opened.
  await all.tokens.getAccessToken();
  await all.wac.findDomainByName(DOMAIN);

  const started = Date.now();
  let done = 0;
  let latencies: number[] | undefined;
  if (input.task === 'logout') {
    done = await logoutDomain(all, input.concurrency);
  } else {
    const indexes = Array.from({ length: input.to! - input.from! }, (_, k) => input.from! + k);
    latencies = input.task === 'provision-one-by-one' ? [] : undefined;
    await mapLimited(indexes, input.concurrency, async (i) => {
      const user = userInput(input.run!, i) as UserInput;
      const t0 = performance.now();
      await createUser(all, user, `direct-${input.run}-${i}`);
      latencies?.push(performance.now() - t0);
      done++;
    });
  }
  const ended = Date.now();
  await all.wac.close();
  return { started, ended, done, latencies };
});
