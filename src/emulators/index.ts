import type { Config } from '../config.js';
import { startKeycloakEmulator, type KeycloakEmulator } from './keycloak.js';
import { startWacCoreEmulator, type WacCoreEmulator } from './wac-core.js';

export interface RunningEmulators {
  keycloak: KeycloakEmulator;
  wac: WacCoreEmulator;
  close(): Promise<void>;
}

/**
 * Starts both emulators where the configuration says Keycloak and wac-core are, accepting the
 * configured client: the demo then needs no settings at all.
 */
export async function startEmulators(config: Config): Promise<RunningEmulators> {
  const keycloakAddress = new URL(config.keycloak.url);
  const wacAddress = new URL(config.wacCoreUrl);

  const keycloak = await startKeycloakEmulator({
    host: keycloakAddress.hostname,
    port: Number(keycloakAddress.port || 80),
    realm: config.keycloak.realm,
    clients: [{ clientId: config.keycloak.clientId, clientSecret: config.keycloak.clientSecret }],
  });
  const wac = await startWacCoreEmulator({
    host: wacAddress.hostname,
    port: Number(wacAddress.port || 80),
    verifyToken: (token) => keycloak.verifyToken(token),
  });

  return {
    keycloak,
    wac,
    async close() {
      await wac.close();
      await keycloak.close();
    },
  };
}
