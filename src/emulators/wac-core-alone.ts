import { once } from 'node:events';

import { createRemoteJWKSet, jwtVerify } from 'jose';

import { startWacCoreEmulator } from './wac-core.js';

/**
 * `kitter emulate-wac-core`: the wac-core emulator alone, the stand-in for wac-core in
 * docker-compose.yml until the real one takes its place. Like wac-core, it accepts the access
 * tokens of the Keycloak realm, checked against the realm's published keys. It reads PORT
 * (default 8001), HOST, KEYCLOAK_URL and KEYCLOAK_REALM, and nothing else: no Redis, no secrets.
 */
export async function runWacCoreEmulatorAlone(
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const port = Number(env.PORT ?? 8001);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('kitter emulate-wac-core: PORT must be a port number');
    return 1;
  }
  const keycloakUrl = (env.KEYCLOAK_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const issuer = `${keycloakUrl}/realms/${env.KEYCLOAK_REALM ?? 'quobis'}`;
  // jose caches the keys and fetches them again when a token names a key it does not hold.
  const keys = createRemoteJWKSet(new URL(`${issuer}/protocol/openid-connect/certs`));

  const wac = await startWacCoreEmulator({
    host: env.HOST ?? '0.0.0.0',
    port,
    async verifyToken(token) {
      await jwtVerify(token, keys, { issuer });
      return true;
    },
  });
  console.log(`wac-core emulator on ${wac.baseUrl}, accepting tokens issued by ${issuer}`);

  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]);
  await wac.close();
  return 0;
}
