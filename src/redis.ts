import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

import type { RedisSettings } from './config.js';
import type { Logger } from './logger.js';
import { settleWithin } from './limit.js';

/** A connection to the configured Redis, whichever its topology. */
export type RedisClient = Redis | Cluster;

/**
 * What a connection is for, which decides how it behaves while Redis is away:
 * - `producer`: the API's. Commands fail at once instead of waiting in ioredis' offline queue,
 *   so a request is answered 503 rather than left hanging. Commands already sent when the
 *   connection drops are sent again if the first reconnection succeeds (a connection cut, not
 *   Redis gone) and fail when it does not: ioredis' default held them for 20 attempts, about
 *   10 s. Lazy: the caller awaits `connect()`.
 * - `blocking`: workers and QueueEvents (BullMQ requires `maxRetriesPerRequest: null`). Commands
 *   wait for the connection to come back, however long that takes. Not lazy: BullMQ's copies of
 *   a lazy connection did not take jobs again after Redis restarted.
 * - `probe`: the start-up check. No retries at all: one answer, good or bad. Lazy.
 */
export type RedisRole = 'producer' | 'blocking' | 'probe';

const ROLE_OPTIONS: Record<RedisRole, RedisOptions> = {
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true },
  blocking: { maxRetriesPerRequest: null },
  probe: {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 3_000,
  },
};

export function createRedis(settings: RedisSettings, role: RedisRole): RedisClient {
  const options: RedisOptions = { ...ROLE_OPTIONS[role] };
  if (role === 'probe') options.sentinelRetryStrategy = () => null;

  switch (settings.kind) {
    case 'single':
      // A password written in the URL wins; ioredis would let the option override it.
      return new Redis(settings.url, {
        ...options,
        ...(new URL(settings.url).password ? {} : { password: settings.password }),
        reconnectOnError: reconnectOnReadOnly,
      });

    case 'sentinel':
      return new Redis({
        ...options,
        sentinels: settings.sentinels,
        name: settings.name,
        password: settings.password,
        // Leaves the old primary as soon as a Sentinel announces the new one, instead of writing
        // to it until it is demoted: whatever it takes in between is lost with the demotion.
        failoverDetector: true,
        reconnectOnError: reconnectOnReadOnly,
      });

    case 'cluster': {
      const { enableOfflineQueue, lazyConnect, ...perNode } = options;
      const clusterOptions: ClusterOptions = {
        enableOfflineQueue,
        lazyConnect,
        redisOptions: { ...perNode, password: settings.password },
      };
      if (role === 'probe') clusterOptions.clusterRetryStrategy = () => null;
      return new Cluster(settings.nodes, clusterOptions);
    }
  }
}

/**
 * Whether an error is ioredis saying Redis cannot be reached now (not a command Redis refused):
 * a request that meets one is answered 503, as the gateway answers its own.
 */
export function isRedisUnreachable(err: unknown): boolean {
  const { name, message } = (err ?? {}) as { name?: string; message?: string };
  if (name === 'MaxRetriesPerRequestError' || name === 'ClusterAllFailedError') return true;
  return (
    typeof message === 'string' &&
    /^(Stream isn't writeable|Cluster isn't ready|Connection is closed|None of startup nodes)/.test(
      message,
    )
  );
}

/**
 * Closes connections: QUIT where Redis answers in time, else the connection is dropped (a QUIT
 * to a Redis that is down waits for a reconnection that may never come).
 */
export async function closeRedis(...clients: RedisClient[]): Promise<void> {
  await Promise.all(
    clients.map(async (client) => {
      await settleWithin(
        client.quit().catch(() => undefined),
        QUIT_WAIT_MS,
      );
      client.disconnect();
    }),
  );
}

/** How long a QUIT may wait for its answer before the connection is dropped. */
const QUIT_WAIT_MS = 2_000;

/**
 * A primary turned replica (a failover behind a single address, or a Sentinel's demotion)
 * answers writes with READONLY: reconnect, which finds the new primary, and send the command
 * again.
 */
function reconnectOnReadOnly(err: Error): 2 | false {
  return err.message.startsWith('READONLY') ? 2 : false;
}

/**
 * How many replicas must hold a new job before the API accepts it (the gateway checks ROLE, then
 * WAITs). With Sentinel, a failover promotes a replica while the old primary still takes writes,
 * for seconds, and those writes are gone once it is demoted: a job accepted then would be lost.
 * One is exact with one replica; with more, the one that answered may not be the one promoted,
 * and waiting for all would stop writes whenever one replica is down. A single server has no
 * replica to wait for; a Cluster's WAIT would reach a random node, not the one that took the job.
 */
export function replicasToConfirm(settings: RedisSettings): number {
  return settings.kind === 'sentinel' ? 1 : 0;
}

/** Where Redis is, for messages: no password. */
export function describeRedis(settings: RedisSettings): string {
  const list = (nodes: Array<{ host: string; port: number }>) =>
    nodes.map(({ host, port }) => `${host}:${port}`).join(',');

  switch (settings.kind) {
    case 'single':
      return settings.url.replace(/\/\/([^@/]*)@/, '//***@');
    case 'sentinel':
      return `primary ${settings.name} of Sentinels ${list(settings.sentinels)}`;
    case 'cluster':
      return `Cluster ${list(settings.nodes)}`;
  }
}

/** Answers why Redis cannot be used, or undefined when it answers PING. */
export async function probeRedis(settings: RedisSettings): Promise<string | undefined> {
  const redis = createRedis(settings, 'probe');
  // connect() only says "Connection is closed"; the error event says why.
  let cause: Error | undefined;
  redis.on('error', (err: Error) => (cause ??= err));
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (err) {
    return (cause ?? (err as Error)).message;
  } finally {
    redis.disconnect();
  }
}

/**
 * Whether an error says Redis is away for now rather than anything else Redis or BullMQ said: a
 * connection failing (refused, reset, timed out, a name not found), what every client reports
 * on every try to reconnect, or Redis not yet taking commands (loading its data after a
 * restart, a replica after a failover).
 */
export function isRedisAway(err: unknown): boolean {
  if (isRedisUnreachable(err)) return true;
  const { code, message } = (err ?? {}) as { code?: string; message?: string };
  if (/^(LOADING|READONLY) /.test(message ?? '')) return true;
  const codes =
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/;
  return (typeof code === 'string' && codes.test(code)) || /^connect E[A-Z]+ /.test(message ?? '');
}

/**
 * Logs Redis connection trouble once a second at most: during an outage every client reports
 * every failed reconnect, and the log must stay readable. Each line names the queue whose
 * report it is, when told (every queue of a process reports the same outage), and how many
 * reports, of any queue, were left unsaid since the line before.
 */
export function redisTrouble(logger: Logger): (err: Error, queue?: string) => void {
  let last = 0;
  let unsaid = 0;
  return (err, queue) => {
    if (Date.now() - last < 1000) {
      unsaid++;
      return;
    }
    last = Date.now();
    logger.warn({ err: err.message, queue, unsaid }, 'Redis connection trouble');
    unsaid = 0;
  };
}
