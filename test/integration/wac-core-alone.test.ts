import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';

import { startKeycloakEmulator, type KeycloakEmulator } from '../../src/emulators/keycloak.js';
import { freePort } from '../support/redis.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('kitter emulate-wac-core (the compose file’s stand-in for wac-core)', function () {
  this.timeout(20_000);

  let keycloak: KeycloakEmulator;
  let other: KeycloakEmulator;
  let child: ChildProcess;
  let output = '';
  let base: string;

  before(async () => {
    keycloak = await startKeycloakEmulator({ clients: [{ clientId: 'a', clientSecret: 'b' }] });
    other = await startKeycloakEmulator({ clients: [{ clientId: 'a', clientSecret: 'b' }] });
    const port = await freePort();
    base = `http://127.0.0.1:${port}/sapi`;

    child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'emulate-wac-core'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        KEYCLOAK_URL: keycloak.url,
        KEYCLOAK_REALM: keycloak.realm,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    process.once('exit', () => child.kill('SIGKILL'));
    const deadline = Date.now() + 15_000;
    while (!output.includes('wac-core emulator on')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(output);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await keycloak.close();
    await other.close();
  });

  const domains = (token?: string) =>
    fetch(`${base}/domains`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('serves wac-core to a token of the realm, checked against its published keys', async () => {
    const answer = await domains(await keycloak.issueToken());

    expect(answer.status).to.equal(200);
  });

  it('refuses no token, and a token signed by another Keycloak', async () => {
    expect((await domains()).status).to.equal(401);
    expect((await domains(await other.issueToken())).status).to.equal(401);
  });

  it('stops on SIGTERM with status 0', async () => {
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');

    expect(code).to.equal(0);
  });
});
