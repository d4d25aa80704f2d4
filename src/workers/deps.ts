import type { KeycloakClient } from '../clients/keycloak.js';
import type { WacCoreClient } from '../clients/wac-core.js';
import type { SecretBox } from '../jobs/secrets.js';
import type { Logger } from '../logger.js';

/** What the processors work with. */
export interface WorkerDeps {
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  secrets: SecretBox;
  logger: Logger;
  settings: {
    /** Users one domain logout logs out at once. */
    logoutFanOut: number;
  };
}
