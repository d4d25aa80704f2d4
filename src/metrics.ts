import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { BackendCall } from './clients/observe.js';
import { readQueueStatus, type QueueStatus } from './jobs/queue-status.js';
import type { Queues } from './jobs/queues.js';

/** How one attempt at a job ended: `retrying` means BullMQ will run it again. */
export type AttemptOutcome = 'succeeded' | 'retrying' | 'failed';

const SECONDS_FAST = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SECONDS_JOB = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const SECONDS_HTTP = [...SECONDS_FAST, 30, 60];

/** Queue figures read for one scrape are reused by the gauges of that same scrape. */
const SNAPSHOT_MS = 1_000;

let processRegistry: Registry | undefined;

/**
 * The process's own metrics (CPU, memory, event loop, GC), registered once however many
 * services one process starts (the tests start many).
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * kitter's Prometheus metrics. Job, backend and HTTP counters count what this process did, as
 * Prometheus expects of each scraped instance; the queue gauges are read from Redis at scrape
 * time, so every API process answers the same, right figures however many workers there are.
 */
export class Metrics {
  readonly registry = new Registry();

  private readonly attempts = new Counter({
    name: 'kitter_job_attempts_total',
    help: 'Attempts at jobs run by this process, by job type and how they ended',
    labelNames: ['type', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly attemptSeconds = new Histogram({
    name: 'kitter_job_attempt_duration_seconds',
    help: 'How long one attempt at a job ran, by job type and how it ended',
    labelNames: ['type', 'outcome'] as const,
    buckets: SECONDS_JOB,
    registers: [this.registry],
  });
  private readonly jobs = new Counter({
    name: 'kitter_jobs_total',
    help: 'Jobs that ended for good in this process, by job type and outcome',
    labelNames: ['type', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly jobSeconds = new Histogram({
    name: 'kitter_job_duration_seconds',
    help: 'From a job being queued to its end, waits and retries included, by type and outcome',
    labelNames: ['type', 'outcome'] as const,
    buckets: SECONDS_JOB,
    registers: [this.registry],
  });
  private readonly backendCalls = new Counter({
    name: 'kitter_backend_requests_total',
    help: 'Requests to Keycloak and wac-core, by operation and HTTP status (or transport, timeout)',
    labelNames: ['backend', 'operation', 'status'] as const,
    registers: [this.registry],
  });
  private readonly backendSeconds = new Histogram({
    name: 'kitter_backend_request_duration_seconds',
    help: 'How long requests to Keycloak and wac-core took, by operation',
    labelNames: ['backend', 'operation'] as const,
    buckets: SECONDS_FAST,
    registers: [this.registry],
  });
  private readonly httpRequests = new Counter({
    name: 'kitter_http_requests_total',
    help: 'Requests this process answered, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly httpSeconds = new Histogram({
    name: 'kitter_http_request_duration_seconds',
    help: 'How long answering took, by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: SECONDS_HTTP,
    registers: [this.registry],
  });

  private snapshot: { at: number; read: Promise<QueueStatus[] | undefined> } | undefined;

  /** One attempt ended; `queuedAt` is when its job was added, for the job's whole duration. */
  jobAttempt(type: string, outcome: AttemptOutcome, seconds: number, queuedAt: number): void {
    this.attempts.inc({ type, outcome });
    this.attemptSeconds.observe({ type, outcome }, seconds);
    if (outcome === 'retrying') return;

    this.jobs.inc({ type, outcome });
    this.jobSeconds.observe({ type, outcome }, Math.max(0, (Date.now() - queuedAt) / 1000));
  }

  /** Bound, so clients can take it as their `observe` hook. */
  readonly backendCall = (call: BackendCall): void => {
    const { backend, operation } = call;
    this.backendCalls.inc({ backend, operation, status: call.status });
    this.backendSeconds.observe({ backend, operation }, call.seconds);
  };

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpSeconds.observe({ method, route }, seconds);
  }

  /** Adds gauges of the queues' state, read from Redis when Prometheus scrapes. */
  watchQueues(queues: Queues): void {
    const read = () => this.readQueues(queues);
    const registers = [this.registry];

    new Gauge({
      name: 'kitter_queue_readable',
      help: '1 when the queues could be read from Redis for this scrape, else 0',
      registers,
      async collect() {
        this.set((await read()) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'kitter_queue_jobs',
      help: 'Jobs in each queue by BullMQ state, read from Redis at scrape time',
      labelNames: ['queue', 'state'] as const,
      registers,
      async collect() {
        this.reset();
        for (const status of (await read()) ?? []) {
          for (const [state, count] of Object.entries(status.counts)) {
            this.set({ queue: status.name, state: state.replace('_', '-') }, count);
          }
        }
      },
    });
    new Gauge({
      name: 'kitter_queue_paused',
      help: '1 while a queue is paused',
      labelNames: ['queue'] as const,
      registers,
      async collect() {
        this.reset();
        for (const status of (await read()) ?? []) {
          this.set({ queue: status.name }, status.paused ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'kitter_queue_workers',
      help: 'Live workers of each queue, over all processes',
      labelNames: ['queue'] as const,
      registers,
      async collect() {
        this.reset();
        for (const status of (await read()) ?? []) {
          if (status.workers !== null) this.set({ queue: status.name }, status.workers);
        }
      },
    });
    new Gauge({
      name: 'kitter_queue_oldest_waiting_seconds',
      help: 'Age of the oldest job waiting to start in each queue (0 when none waits)',
      labelNames: ['queue'] as const,
      registers,
      async collect() {
        this.reset();
        for (const status of (await read()) ?? []) {
          this.set({ queue: status.name }, status.oldest_waiting_s ?? 0);
        }
      },
    });
  }

  /** The Prometheus text: this service's metrics, then the process's. */
  async render(): Promise<{ contentType: string; text: string }> {
    const merged = Registry.merge([this.registry, processMetrics()]);
    return { contentType: merged.contentType, text: await merged.metrics() };
  }

  private readQueues(queues: Queues): Promise<QueueStatus[] | undefined> {
    if (this.snapshot && Date.now() - this.snapshot.at < SNAPSHOT_MS) return this.snapshot.read;

    const read = Promise.all(Object.values(queues).map((queue) => readQueueStatus(queue))).catch(
      () => undefined,
    );
    this.snapshot = { at: Date.now(), read };
    return read;
  }
}
