import type { KeycloakClient } from '../clients/keycloak.js';
import type { WacCoreClient } from '../clients/wac-core.js';
import type { Config } from '../config.js';
import type { ImportStore } from '../imports/store.js';
import type { JobGateway } from '../jobs/gateway.js';
import type { Queues } from '../jobs/queues.js';
import type { SecretBox } from '../jobs/secrets.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RedisClient } from '../redis.js';
import type { DomainLookup } from './domain-lookup.js';
import type { IdempotencyKeys } from './idempotency.js';

/** What the API's routes work with. */
export interface ApiDeps {
  config: Config;
  logger: Logger;
  redis: RedisClient;
  gateway: JobGateway;
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  secrets: SecretBox;
  domains: DomainLookup;
  idempotency: IdempotencyKeys;
  imports: ImportStore;
  /** The queues themselves, for the operators' routes and the dashboard. */
  queues: Queues;
  metrics: Metrics;
}
