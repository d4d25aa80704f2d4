import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

import { createApp } from './api/app.js';
import { DomainLookup } from './api/domain-lookup.js';
import { IdempotencyKeys } from './api/idempotency.js';
import { serveMetrics } from './api/metrics-server.js';
import { KeycloakClient } from './clients/keycloak.js';
import { TokenSource } from './clients/token-source.js';
import { WacCoreClient } from './clients/wac-core.js';
import type { Config } from './config.js';
import { ImportStore } from './imports/store.js';
import { JobGateway } from './jobs/gateway.js';
import { createQueues, QUEUE_NAMES } from './jobs/queues.js';
import { SecretBox } from './jobs/secrets.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { settleWithin } from './limit.js';
import {
  closeRedis,
  createRedis,
  redisTrouble,
  replicasToConfirm,
  type RedisClient,
} from './redis.js';
import { startWorkers, type RunningWorkers } from './workers/index.js';

export interface ServiceParts {
  api: boolean;
  worker: boolean;
}

export interface RunningService {
  /** The API's address, when this process serves it. */
  url: string | undefined;
  workers: RunningWorkers | undefined;
  /** Where a worker-only process serves /metrics, when `KITTER_METRICS_PORT` is set. */
  metricsUrl?: string;
  /** Stops in order: HTTP server, workers, queues, Redis. Safe to call twice. */
  close(): Promise<void>;
}

export async function startService(
  config: Config,
  logger: Logger,
  parts: ServiceParts,
): Promise<RunningService> {
  const metrics = new Metrics();
  const tokens = new TokenSource({ ...config.keycloak, timeoutMs: config.backendTimeoutMs });
  const keycloak = new KeycloakClient(tokens, {
    ...config.keycloak,
    timeoutMs: config.backendTimeoutMs,
    observe: metrics.backendCall,
  });
  const wac = new WacCoreClient(tokens, {
    url: config.wacCoreUrl,
    timeoutMs: config.backendTimeoutMs,
    observe: metrics.backendCall,
  });
  const secrets = new SecretBox(config.secretKey);
  const closers: Closer[] = [];

  let url: string | undefined;
  if (parts.api) {
    // The API answers 503 at once when Redis is down, instead of queueing commands.
    const redis = createRedis(config.redis, 'producer');
    redis.on('error', () => undefined);
    await redis.connect();
    logConnection(redis, logger, "the API's Redis connection");
    // BullMQ opens a connection of its own from this one for each queue's event stream.
    const events = createRedis(config.redis, 'blocking');
    events.on('error', () => undefined);

    const queues = createQueues(redis, config.queuePrefix, config.worker, redisTrouble(logger));
    // Each queue checks Redis's version as it opens, once: a check cut off by Redis going away
    // (this connection gives a command one retry) would leave the queue refusing every write
    // for good, while the API answered ready. So the API waits for its queues before it
    // serves, and fails to start rather than serve with one broken.
    await Promise.all(Object.values(queues).map((queue) => queue.waitUntilReady()));
    const gateway = new JobGateway(queues, {
      connection: redis,
      events,
      prefix: config.queuePrefix,
      listen: [...QUEUE_NAMES],
      replicas: replicasToConfirm(config.redis),
    });
    const domains = new DomainLookup(wac);
    const idempotency = new IdempotencyKeys(redis, config.queuePrefix, config.secretKey);
    metrics.watchQueues(queues);
    const app = createApp({
      ...{ config, logger, redis, gateway, keycloak, wac, secrets, domains, idempotency },
      imports: new ImportStore(redis, config.queuePrefix),
      ...{ queues, metrics },
    });

    const server = http.createServer(app.callback());
    server.on('clientError', answerClientError);
    server.listen(config.port, config.host);
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
    url = `http://${host}:${port}`;

    // Requests under way (an import being read, a write waiting for its job) get as long as
    // active jobs do.
    closers.push([
      'the HTTP server',
      () => closeServer(server),
      config.worker.shutdownDeadlineMs + STEP_MS,
    ]);
    closers.push(['the job event streams', () => gateway.close()]);
    closers.push([
      "the API's queues",
      () => Promise.all(Object.values(queues).map((queue) => queue.close())),
    ]);
    closers.push(["the API's Redis connections", () => closeRedis(redis, events)]);
  }

  let workers: RunningWorkers | undefined;
  if (parts.worker) {
    const connection = createRedis(config.redis, 'blocking');
    connection.on('error', () => undefined);
    workers = startWorkers(
      {
        ...{ keycloak, wac, secrets, logger },
        imports: new ImportStore(connection, config.queuePrefix),
        settings: { logoutFanOut: config.worker.logoutFanOut },
      },
      {
        connection,
        prefix: config.queuePrefix,
        concurrency: config.worker.concurrency,
        logoutConcurrency: config.worker.logoutConcurrency,
        lockMs: config.worker.lockMs,
        ratePerSecond: config.worker.ratePerSecond,
        metrics,
      },
    );
    // Workers close before the queues and connections they use.
    closers.splice(1, 0, [
      'the workers',
      () => workers!.close(config.worker.shutdownDeadlineMs),
      config.worker.shutdownDeadlineMs + STEP_MS,
    ]);
    closers.push(["the workers' Redis connection", () => closeRedis(connection)]);
  }
  closers.push(['the wac-core client', () => wac.close()]);

  // A worker-only process has no API to be scraped at: it serves /metrics on a port of its own.
  let metricsUrl: string | undefined;
  if (parts.worker && !parts.api && config.metricsPort !== undefined) {
    const server = await serveMetrics(config, logger, metrics);
    metricsUrl = server.url;
    closers.unshift(['the metrics server', () => server.close()]);
  }

  let closing: Promise<void> | undefined;
  return {
    url,
    metricsUrl,
    workers,
    close() {
      closing ??= runAll(closers, logger);
      return closing;
    },
  };
}

/**
 * Logs when a connection to Redis is lost and when it is back, once each way (not each try to
 * reconnect): while it is lost, the API answers 503, and the log says since when.
 */
function logConnection(connection: RedisClient, logger: Logger, what: string): void {
  let lost = false;
  // Only when ioredis tries again: a connection closed on purpose (at shutdown) is not lost.
  connection.on('reconnecting', () => {
    if (lost) return;
    lost = true;
    logger.warn({ connection: what }, 'lost the connection to Redis');
  });
  connection.on('ready', () => {
    if (!lost) return;
    lost = false;
    logger.info({ connection: what }, 'connected to Redis again');
  });
}

/** A step of the shutdown: what it closes, how, and how long it may take (else `STEP_MS`). */
type Closer = [what: string, close: () => Promise<unknown>, withinMs?: number];

/**
 * How long a shutdown step may take. With Redis unreachable, BullMQ's `close()` never ends (its
 * connections wait for a reconnection that does not come; taskforcesh/bullmq#4656): the
 * shutdown goes on without it rather than hang until the process is killed.
 */
const STEP_MS = 5_000;

/** Runs every step in order, each at most its time, even when one fails or overruns. */
async function runAll(steps: Closer[], logger: Logger): Promise<void> {
  for (const [what, close, withinMs = STEP_MS] of steps) {
    try {
      const closing = close();
      if ((await settleWithin(closing, withinMs)) === 'late') {
        logger.warn({ step: what, ms: withinMs }, 'shutdown step overran, going on without it');
      } else {
        await closing;
      }
    } catch (err) {
      logger.warn({ step: what, err: String(err) }, 'shutdown step failed');
    }
  }
}

/**
 * Requests Node's HTTP parser refuses never reach Koa (headers over 16 KB, bytes that are not
 * HTTP); they get the same JSON error shape as every other refusal.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }

  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const status = tooLarge ? 431 : 400;
  const body = JSON.stringify({
    error: tooLarge ? 'the request headers are too large' : 'the request is not valid HTTP',
    code: 'validation_failed',
  });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
