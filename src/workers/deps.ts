import type { KeycloakClient } from '../clients/keycloak.js';
import type { WacCoreClient } from '../clients/wac-core.js';
import type { Queue } from 'bullmq';

import type { ImportStore } from '../imports/store.js';
import type { QueueName } from '../jobs/queues.js';
import type { SecretBox } from '../jobs/secrets.js';
import type { Logger } from '../logger.js';

/** What the processors work with. */
export interface WorkerDeps {
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  secrets: SecretBox;
  logger: Logger;
  /** Where the rows of imports are counted. */
  imports: ImportStore;
  /** The queues, for processors that manage other jobs (set by the worker start-up). */
  queues?: Partial<Record<QueueName, Queue>>;
  settings: {
    /** Users one domain logout logs out at once. */
    logoutFanOut: number;
  };
}
