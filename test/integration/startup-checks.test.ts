import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

import { expect } from 'chai';

import { loadConfig, type Config } from '../../src/config.js';
import {
  startKeycloakEmulator,
  type KeycloakEmulatorOptions,
} from '../../src/emulators/keycloak.js';
import { startWacCoreEmulator, type WacCoreEmulator } from '../../src/emulators/wac-core.js';
import type { KeycloakEmulator } from '../../src/emulators/keycloak.js';
import { checkStartup } from '../../src/startup-checks.js';
import { startRedisServer, testRedisUrl, type RedisServer } from '../support/redis.js';

const SECRET = 'startup-check-client-secret';

describe('start-up checks', function () {
  this.timeout(30_000);
  let keycloak: KeycloakEmulator | undefined;
  let wac: WacCoreEmulator | undefined;
  let redis: RedisServer | undefined;

  async function configWith(
    realm: Partial<KeycloakEmulatorOptions> = {},
    client: { serviceAccountRoles?: string[] } = {},
    env: Record<string, string> = {},
  ): Promise<{ config: Config; env: Record<string, string> }> {
    keycloak = await startKeycloakEmulator({
      realm: 'quobis',
      clients: [{ clientId: 'kitter', clientSecret: SECRET, ...client }],
      ...realm,
    });
    wac = await startWacCoreEmulator({ verifyToken: (token) => keycloak!.verifyToken(token) });
    const full = {
      REDIS_URL: await testRedisUrl(),
      KITTER_QUEUE_PREFIX: `test-${randomBytes(6).toString('hex')}`,
      KEYCLOAK_URL: keycloak.url,
      WAC_CORE_URL: wac.baseUrl,
      KEYCLOAK_CLIENT_SECRET: SECRET,
      KITTER_API_TOKENS: 'startup-check-api-token',
      KITTER_SECRET_KEY: 'startup-check-secret-key',
      KITTER_BACKEND_TIMEOUT_MS: '2000',
      ...env,
    };
    return { config: loadConfig('worker', full), env: full };
  }

  afterEach(async () => {
    await wac?.close();
    await keycloak?.close();
    await redis?.kill();
    [keycloak, wac, redis] = [undefined, undefined, undefined];
  });

  it('finds nothing wrong, and leaves no user behind, when all is set up right', async () => {
    const { config } = await configWith();

    const findings = await checkStartup(config);

    expect(findings).to.deep.equal({ problems: [], warnings: [] });
    expect(keycloak!.users()).to.deep.equal([]);
  });

  it('names a Redis whose maxmemory-policy is not noeviction', async () => {
    redis = await startRedisServer(undefined, ['--maxmemory-policy', 'allkeys-lru']);
    const { config } = await configWith({}, {}, { REDIS_URL: redis.url });

    const findings = await checkStartup(config);

    expect(findings.problems).to.deep.equal([
      "Redis's maxmemory-policy is allkeys-lru, not noeviction: Redis would drop queued jobs " +
        'when its memory is full (set maxmemory-policy noeviction)',
    ]);
  });

  it('only warns when the provider hides CONFIG', async () => {
    redis = await startRedisServer(undefined, ['--rename-command', 'CONFIG', '']);
    const { config } = await configWith({}, {}, { REDIS_URL: redis.url });

    const findings = await checkStartup(config);

    expect(findings.problems).to.deep.equal([]);
    expect(findings.warnings).to.have.length(1);
    expect(findings.warnings[0]).to.match(/^cannot read Redis's maxmemory-policy \(.*unknown/i);
  });

  it('names the roles a service account lacks', async () => {
    const { config } = await configWith({}, { serviceAccountRoles: ['view-users'] });

    const findings = await checkStartup(config);

    expect(findings.problems).to.deep.equal([
      "the Keycloak client kitter's token lacks the realm-management roles manage-users, " +
        'query-users: give its service account manage-users, view-users, query-users',
    ]);
  });

  it('says when the client gets no token at all', async () => {
    const { config } = await configWith({}, {}, { KEYCLOAK_CLIENT_SECRET: 'wrong-secret' });

    const findings = await checkStartup(config);

    expect(findings.problems).to.have.length(1);
    expect(findings.problems[0]).to.match(/^the Keycloak client kitter gets no token from realm/);
    expect(findings.problems[0]).to.match(/ at http:\/\/127\.0\.0\.1:\d+: keycloak token: 401/);
  });

  it("names a realm that drops kitter's attributes, and deletes its test user", async () => {
    const { config } = await configWith({ unmanagedAttributePolicy: 'DISABLED' });

    const findings = await checkStartup(config);

    expect(findings.problems).to.deep.equal([
      "Keycloak's realm drops the user attributes domain, phone_number, kitter_job that kitter " +
        "writes: set the realm's unmanaged attribute policy to ENABLED, or declare them in its " +
        'user profile',
    ]);
    expect(keycloak!.users()).to.deep.equal([]);
  });

  it('names what to change when the port it is to listen on is taken', async () => {
    const { env } = await configWith();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const { port } = squatter.address() as net.AddressInfo;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'api'], {
      env: { ...process.env, ...env, HOST: '127.0.0.1', PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    squatter.close();

    expect(code, stderr).to.equal(1);
    expect(stderr).to.include(
      `kitter: port ${port} is taken by another program: move the API with PORT, and the ` +
        "demo's emulators with KEYCLOAK_URL and WAC_CORE_URL",
    );
  });

  it('stops a worker process with one line per problem and status 1', async () => {
    const { env } = await configWith(
      { unmanagedAttributePolicy: 'DISABLED' },
      { serviceAccountRoles: [] },
    );
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'worker'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');

    expect(code).to.equal(1);
    expect(stderr.trim().split('\n')).to.deep.equal([
      "kitter: the Keycloak client kitter's token lacks the realm-management roles " +
        'manage-users, view-users, query-users: give its service account manage-users, ' +
        'view-users, query-users',
    ]);
  });
});
