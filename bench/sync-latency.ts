/**
 * Synchronous create latency: `POST /users` waiting for its result (201), one request at a
 * time, through an API and one worker. Beside it, in the same run, the same creates made
 * directly one at a time (bench/direct.ts): the same calls through the same clients to the same
 * emulators, so its time is the emulators' own latency as a caller sees it (their fixed
 * BENCH_LATENCY_MS on each call of the critical path, plus their and the clients' own work).
 * What the queue round trip adds is kitter's time less that. Medians of BENCH_RUNS runs.
 *
 *   npm run bench:sync-latency     (BENCH_REQUESTS=300 BENCH_RUNS=3)
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool } from 'undici';

import { freePort, startRedisServer } from '../test/support/redis.js';
import type { DirectInput, DirectResult } from './direct.js';
import {
  apiAnswers,
  kitterEnv,
  LATENCY_MS,
  machine,
  median,
  percentile,
  round,
  RUNS,
  saveResult,
  startBackends,
  startChild,
  startKitter,
  TOKEN,
  userInput,
} from './support.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
/**
 * The backend calls a create waits for one after another: the domain, the Keycloak user, the
 * wac-core user, the SIP mapping, then the three read-backs at once.
 */
const CRITICAL_PATH_CALLS = 5;
const FIXED_MS = CRITICAL_PATH_CALLS * LATENCY_MS;

const redis = await startRedisServer();
const backends = await startBackends();

async function clean() {
  const flush = new Redis(redis.url);
  await flush.flushall();
  await flush.quit();
  await backends.call('reset');
}

function summary(latencies: number[]) {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    p50_ms: round(percentile(sorted, 50), 1),
    p99_ms: round(percentile(sorted, 99), 1),
    max_ms: round(sorted[sorted.length - 1], 1),
  };
}

async function measureKitter(run: number) {
  await clean();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = kitterEnv(redis.url, backends);
  const api = await startKitter('api', { ...env, PORT: String(port) }, apiAnswers(url));
  const worker = await startKitter('worker', { ...env, PORT: '0' }, async () => true);
  const pool = new Pool(url, { connections: 1 });

  const latencies: number[] = [];
  const spans: Array<{ jobId: string; sent: number; answered: number }> = [];
  // The first ten warm both processes up and are not counted.
  for (let i = 0; i < REQUESTS + 10; i++) {
    const started = performance.now();
    const answer = await pool.request({
      method: 'POST',
      path: '/users',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: userInput(`s${run}`, i) }),
    });
    const text = await answer.body.text();
    if (answer.statusCode !== 201) throw new Error(`POST /users: ${answer.statusCode} ${text}`);
    if (i >= 10) {
      latencies.push(performance.now() - started);
      const jobId = String(answer.headers['kitter-job']);
      spans.push({ jobId, sent: Date.now() - (performance.now() - started), answered: Date.now() });
    }
  }
  const phases = await phasesOf(spans);

  await pool.close();
  await worker.stop();
  await api.stop();
  return { ...summary(latencies), phases };
}

/**
 * Where each request's time went, from the jobs' own timestamps (ms, Date.now): until the job
 * was queued, until a worker took it, the job's run, and from its end until the answer arrived.
 */
async function phasesOf(spans: Array<{ jobId: string; sent: number; answered: number }>) {
  const connection = new Redis(redis.url);
  const queue = new Queue('provisioning', { connection, prefix: 'bench' });
  const parts = { to_queue: [], to_worker: [], job: [], to_answer: [] } as Record<string, number[]>;
  for (const span of spans) {
    const job = await queue.getJob(span.jobId);
    if (!job?.processedOn || !job.finishedOn) continue;
    parts.to_queue.push(job.timestamp - span.sent);
    parts.to_worker.push(job.processedOn - job.timestamp);
    parts.job.push(job.finishedOn - job.processedOn);
    parts.to_answer.push(span.answered - job.finishedOn);
  }
  await queue.close();
  await connection.quit();
  return Object.fromEntries(
    Object.entries(parts).map(([name, values]) => [`${name}_p50_ms`, median(values)]),
  );
}

async function measureDirect(run: number) {
  await clean();
  const child = await startChild('direct.ts');
  const input = (from: number, to: number): DirectInput => ({
    keycloakUrl: backends.keycloakUrl,
    wacBaseUrl: backends.wacBaseUrl,
    task: 'provision-one-by-one',
    run: `d${run}`,
    from,
    to,
    concurrency: 1,
  });
  await child.run<DirectResult>(input(0, 10));
  const result = await child.run<DirectResult>(input(10, REQUESTS + 10));
  await child.stop();
  return summary(result.latencies!);
}

const kitter = [];
const direct = [];
for (let run = 0; run < RUNS; run++) {
  direct.push(await measureDirect(run));
  kitter.push(await measureKitter(run));
  console.log(
    `  run ${run + 1}/${RUNS}: kitter p50 ${kitter[run].p50_ms} p99 ${kitter[run].p99_ms} ms, ` +
      `direct p50 ${direct[run].p50_ms} p99 ${direct[run].p99_ms} ms`,
  );
}

const p50 = median(kitter.map((k) => k.p50_ms));
const p99 = median(kitter.map((k) => k.p99_ms));
const directP50 = median(direct.map((d) => d.p50_ms));
const directP99 = median(direct.map((d) => d.p99_ms));
const result = {
  requests: REQUESTS,
  latency_ms: LATENCY_MS,
  critical_path_calls: CRITICAL_PATH_CALLS,
  fixed_backend_ms: FIXED_MS,
  runs: RUNS,
  kitter: { p50_ms: p50, p99_ms: p99 },
  baseline: { p50_ms: directP50, p99_ms: directP99 },
  added_p50_ms: round(p50 - FIXED_MS, 1),
  added_p99_ms: round(p99 - FIXED_MS, 1),
  queue_added_p50_ms: round(p50 - directP50, 1),
  queue_added_p99_ms: round(p99 - directP99, 1),
  target: { queue_added_p50_ms: 10 },
  kitter_runs: kitter,
  baseline_runs: direct,
  machine: machine(),
};

console.log(`synchronous POST /users, one at a time, ${REQUESTS} requests (median of ${RUNS})`);
console.log(
  `  backends' fixed latency: ${CRITICAL_PATH_CALLS} calls x ${LATENCY_MS} ms = ${FIXED_MS} ms`,
);
console.log(`  kitter:    p50 ${p50} ms, p99 ${p99} ms`);
console.log(`  direct:    p50 ${directP50} ms, p99 ${directP99} ms (same calls, no queue)`);
console.log(
  `  added by the queue (kitter less direct): p50 ${result.queue_added_p50_ms} ms ` +
    `(target < 10), p99 ${round(p99 - directP99, 1)} ms`,
);
console.log(
  `  beyond the fixed ${FIXED_MS} ms: kitter p50 ${result.added_p50_ms} ms, ` +
    `direct p50 ${round(directP50 - FIXED_MS, 1)} ms`,
);
console.log(`  phases (ms, p50, last run): ${JSON.stringify(kitter[kitter.length - 1].phases)}`);
await saveResult('sync_latency', result);

await backends.close();
await redis.kill();
