import type { Redis } from 'ioredis';

import type { KeycloakClient } from '../clients/keycloak.js';
import type { WacCoreClient } from '../clients/wac-core.js';
import type { Config } from '../config.js';
import type { JobGateway } from '../jobs/gateway.js';
import type { SecretBox } from '../jobs/secrets.js';
import type { Logger } from '../logger.js';
import type { DomainLookup } from './domain-lookup.js';
import type { IdempotencyKeys } from './idempotency.js';

/** What the API's routes work with. */
export interface ApiDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  gateway: JobGateway;
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  secrets: SecretBox;
  domains: DomainLookup;
  idempotency: IdempotencyKeys;
}
