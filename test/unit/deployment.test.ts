import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';
import { parse } from 'yaml';

import { API_NODE_ARGS, WORKER_NODE_ARGS } from '../../bench/support.js';
import { ConfigError, loadConfig, VARIABLES, type Mode } from '../../src/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

const composeText = read('docker-compose.yml');
const compose = parse(composeText, { merge: true }) as { services: Record<string, Service> };
const realm = JSON.parse(read('deploy/keycloak/quobis-realm.json'));

interface Service {
  build?: string;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  entrypoint?: string[];
  ports?: string[];
  volumes?: string[];
  container_name?: string;
  stop_grace_period?: string;
}

/** What an operator puts in .env: the secrets compose has no default for. */
const SECRETS = {
  KEYCLOAK_CLIENT_SECRET: 'compose-client-secret',
  KITTER_SECRET_KEY: 'compose-secret-key-0123456789',
  KITTER_API_TOKENS: 'compose-api-token-0123456789',
  KEYCLOAK_ADMIN_PASSWORD: 'compose-admin-password',
};

/** The attributes kitter writes on Keycloak users (src/model/users.ts, the user.create job). */
const ATTRIBUTES = ['domain', 'phone_number', 'kitter_job'];

/** The realm-management roles kitter's service account needs (KNOWLEDGE.md, the README). */
const SERVICE_ACCOUNT_ROLES = ['manage-users', 'view-users', 'query-users'];

/** The modes of kitter's own entry point; `emulate-wac-core` reads no configuration. */
const MODES = ['api', 'worker', 'all'];

/** Compose's interpolation of `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?}`. */
function interpolate(text: string, shell: Record<string, string>): string {
  const pattern = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g;
  return text.replace(pattern, (match, name: string, colon: string, op: string, arg: string) => {
    if (match === '$$') return '$';
    const value = shell[name];
    const missing = colon ? !value : value === undefined;
    if (op === '-' && missing) return arg;
    if (op === '?' && missing) throw new Error(`${name} is required: ${arg}`);
    return value ?? '';
  });
}

function environmentOf(service: Service, shell: Record<string, string> = SECRETS) {
  return Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([name, value]) => [
      name,
      interpolate(String(value), shell),
    ]),
  );
}

/** The services that run kitter's image, by the mode they run. */
const kitterServices = Object.entries(compose.services).filter(
  ([, service]) => service.build === '.',
);

function problemsOf(mode: string, env: Record<string, string>): string[] {
  try {
    loadConfig(mode as Mode, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

function seconds(duration: string): number {
  const match = /^(\d+)(ms|s|m)$/.exec(duration);
  if (!match) throw new Error(`not a compose duration: ${duration}`);
  return Number(match[1]) / { ms: 1000, s: 1, m: 1 / 60 }[match[2] as 'ms' | 's' | 'm'];
}

describe('the deployment files', () => {
  describe('docker-compose.yml', () => {
    it('passes a Compose client’s own check (docker compose config)', function () {
      const client = composeClient();
      if (!client) {
        // .ci/run installs docker-compose, so CI always runs this check.
        console.warn('    (skipped: no Compose client here; .ci/run installs docker-compose)');
        this.skip();
      }

      const result = spawnSync(client[0], [...client.slice(1), 'config', '-q'], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '' },
      });

      expect(result.status, result.stderr).to.equal(0);
    });

    it('runs the api, the workers and the wac-core stand-in from kitter’s image', () => {
      const modes = kitterServices.map(([, service]) => service.command?.[0]);

      expect(modes).to.have.members(['api', 'worker', 'emulate-wac-core']);
    });

    it('names only variables kitter reads, in every kitter container', () => {
      for (const [name, service] of kitterServices) {
        const unknown = Object.keys(service.environment ?? {}).filter(
          (variable) => !VARIABLES.includes(variable),
        );
        expect(unknown, `unknown variables of ${name}`).to.deep.equal([]);
      }
    });

    it('gives every kitter container a configuration kitter accepts', () => {
      for (const [name, service] of kitterServices) {
        const mode = service.command![0];
        if (!MODES.includes(mode)) continue;
        expect(problemsOf(mode, environmentOf(service)), name).to.deep.equal([]);
      }
    });

    it('has no default for any secret: kitter refuses to start without them', () => {
      const api = compose.services.api;

      const problems = problemsOf('api', environmentOf(api, {}));

      for (const secret of ['KEYCLOAK_CLIENT_SECRET', 'KITTER_SECRET_KEY', 'KITTER_API_TOKENS']) {
        expect(
          problems.some((problem) => problem.startsWith(secret)),
          secret,
        ).to.equal(true);
      }
    });

    it('points kitter at the realm, client and role that the realm file creates', () => {
      for (const [name, service] of kitterServices) {
        if (!MODES.includes(service.command![0])) continue;
        const config = loadConfig(service.command![0] as Mode, environmentOf(service));

        expect(config.keycloak.realm, name).to.equal(realm.realm);
        expect(config.keycloak.url, name).to.equal('http://keycloak:8080');
        expect(config.keycloak.clientId, name).to.equal('kitter');
        expect(config.keycloak.clientSecret, name).to.equal(SECRETS.KEYCLOAK_CLIENT_SECRET);
        expect(realm.clients.map((client: any) => client.clientId)).to.include('kitter');
        const roles = realm.roles.realm.map((role: any) => role.name);
        expect(roles, name).to.include(config.requiredRole);
      }
    });

    it('hands Keycloak the realm file and the same client secret kitter uses', () => {
      const keycloak = compose.services.keycloak;
      const env = environmentOf(keycloak);

      expect(keycloak.command).to.include('--import-realm');
      expect(keycloak.volumes).to.include('./deploy/keycloak:/opt/keycloak/data/import:ro');
      expect(env.KEYCLOAK_CLIENT_SECRET).to.equal(SECRETS.KEYCLOAK_CLIENT_SECRET);
      // The entry point refuses to import the realm with an empty secret.
      expect(keycloak.entrypoint!.join(' ')).to.include('KEYCLOAK_CLIENT_SECRET');
      expect(environmentOf(keycloak, {}).KEYCLOAK_CLIENT_SECRET).to.equal('');
    });

    it('sends kitter to the wac-core stand-in, which checks tokens of the same realm', () => {
      const wac = compose.services['wac-core'];
      const env = environmentOf(wac);

      expect(env.KEYCLOAK_URL).to.equal('http://keycloak:8080');
      expect(env.KEYCLOAK_REALM).to.equal(realm.realm);
      const api = loadConfig('api', environmentOf(compose.services.api));
      expect(api.wacCoreUrl).to.equal(`http://wac-core:${env.PORT}/sapi`);
    });

    it('lets workers scale and drain: no fixed name or port, time to finish their jobs', () => {
      const worker = compose.services.worker;
      const config = loadConfig('worker', environmentOf(worker));

      expect(worker.container_name).to.equal(undefined);
      expect(worker.ports).to.equal(undefined);
      expect(seconds(worker.stop_grace_period!)).to.be.greaterThan(
        config.worker.shutdownDeadlineMs / 1000,
      );
    });

    it('starts the API and the workers as the benchmarks measured them', () => {
      const image = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'));
      const [node, main] = JSON.parse(image![1]) as string[];

      expect(compose.services.api.entrypoint).to.deep.equal([node, ...API_NODE_ARGS, main]);
      expect(compose.services.worker.entrypoint).to.deep.equal([node, ...WORKER_NODE_ARGS, main]);
      for (const [name, service] of kitterServices) {
        expect(environmentOf(service).NODE_OPTIONS, name).to.equal(undefined);
      }
    });

    it('runs Redis with an append-only file and without eviction', () => {
      const command = compose.services.redis.command!.join(' ');

      expect(command).to.include('--appendonly yes');
      expect(command).to.include('--maxmemory-policy noeviction');
    });

    it('documents every variable it takes from the environment in .env.example', () => {
      const example = read('.env.example');
      const used = [...composeText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map(
        (match) => match[1],
      );

      const missing = [...new Set(used)].filter(
        (name) => !new RegExp(`^#?${name}=`, 'm').test(example),
      );
      expect(missing).to.deep.equal([]);
    });
  });

  it('lists every variable kitter reads in .env.example', () => {
    const example = read('.env.example');

    const missing = VARIABLES.filter((name) => !new RegExp(`^#?${name}=`, 'm').test(example));
    expect(missing).to.deep.equal([]);
  });

  describe('the Keycloak realm file', () => {
    const client = realm.clients.find((each: any) => each.clientId === 'kitter');
    const serviceAccount = realm.users.find(
      (user: any) => user.serviceAccountClientId === 'kitter',
    );
    const profileProvider = realm.components['org.keycloak.userprofile.UserProfileProvider'][0];
    const profile = JSON.parse(profileProvider.config['kc.user.profile.config'][0]);

    it('makes kitter a confidential client with a service account and nothing else', () => {
      expect(client).to.deep.include({
        publicClient: false,
        serviceAccountsEnabled: true,
        standardFlowEnabled: false,
        implicitFlowEnabled: false,
        directAccessGrantsEnabled: false,
      });
      // From the Keycloak container's environment at import, never written in the file.
      expect(client.secret).to.equal('${KEYCLOAK_CLIENT_SECRET}');
    });

    it('gives the service account the realm-management roles kitter needs', () => {
      expect(serviceAccount.clientRoles['realm-management']).to.include.members(
        SERVICE_ACCOUNT_ROLES,
      );
    });

    it('defines the role the API requires by default', () => {
      const roles = realm.roles.realm.map((role: any) => role.name);

      expect(roles).to.include(loadConfig('demo', {}).requiredRole);
    });

    it('keeps every attribute kitter writes, editable by admins only', () => {
      expect(profileProvider.providerId).to.equal('declarative-user-profile');
      const declared = new Map(profile.attributes.map((each: any) => [each.name, each]));
      const unmanagedKept = ['ENABLED', 'ADMIN_EDIT'].includes(profile.unmanagedAttributePolicy);

      for (const name of ATTRIBUTES) {
        const attribute = declared.get(name) as any;
        if (attribute === undefined) {
          expect(unmanagedKept, `${name} is neither declared nor kept as unmanaged`).to.equal(true);
          continue;
        }
        expect(attribute.permissions.edit, name).to.deep.equal(['admin']);
        expect(attribute.multivalued, name).to.equal(false);
      }
    });

    it('keeps Keycloak’s own user attributes', () => {
      const names = profile.attributes.map((each: any) => each.name);

      expect(names).to.include.members(['username', 'email', 'firstName', 'lastName']);
    });

    it('lets admins rename users, as PATCH /users does', () => {
      expect(realm.editUsernameAllowed).to.equal(true);
    });
  });
});

/** `docker compose` (the plugin) or `docker-compose`, whichever this machine has. */
function composeClient(): string[] | undefined {
  const works = (command: string[]) =>
    spawnSync(command[0], [...command.slice(1), 'version'], { stdio: 'ignore' }).status === 0;
  if (works(['docker', 'compose'])) return ['docker', 'compose'];
  if (works(['docker-compose'])) return ['docker-compose'];
  return undefined;
}
