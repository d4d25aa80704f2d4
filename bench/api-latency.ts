/**
 * API latency under load: autocannon sends `POST /users` with `Prefer: respond-async` (a new
 * username each request) at a fixed rate for BENCH_SECONDS, first to a kitter API with no
 * worker, then with a worker draining the queue, then, while that worker still drains it, to
 * the baseline: a bare Koa route that parses the same body and validates it with kitter's joi
 * schema, and answers without queueing (bench/bare-api.ts). Reports p50, p99 and errors of
 * each, the medians of BENCH_RUNS runs.
 *
 *   npm run bench:api-latency      (BENCH_RATES=500,1000 BENCH_SECONDS=10 BENCH_RUNS=3)
 */
import type { EventEmitter } from 'node:events';

import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

import { freePort, startRedisServer } from '../test/support/redis.js';
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

const RATES = (process.env.BENCH_RATES ?? '500,1000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
/** Keep-alive connections the rate is spread over, as from a load balancer. */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);

interface Load {
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  requests: number;
  /** Connection errors, timeouts and answers other than 202. */
  errors: number;
}

const redis = await startRedisServer();
const backends = await startBackends();

/**
 * `rate` requests a second for `seconds` to `url`; the latency of every answer, as measured.
 * autocannon paces each connection by the second: it sends the second's share back to back,
 * then waits for the next second. So that the load is not one burst a second, each connection
 * is an autocannon instance of its own, started 1/CONNECTIONS of a second after the previous.
 */
async function load(url: string, rate: number, run: string, seconds = SECONDS): Promise<Load> {
  let next = 0;
  const durations: number[] = [];
  let bad = 0;
  const one = async (share: number) => {
    // Without a callback, autocannon answers a promise that is also its event emitter.
    const instance = autocannon({
      url,
      connections: 1,
      overallRate: share,
      duration: seconds,
      requests: [
        {
          method: 'POST',
          path: '/users',
          headers: {
            authorization: `Bearer ${TOKEN}`,
            'content-type': 'application/json',
            prefer: 'respond-async',
          },
          setupRequest: (request) => ({
            ...request,
            body: JSON.stringify({ user: userInput(run, next++) }),
          }),
        },
      ],
    }) as ReturnType<typeof autocannon> & EventEmitter;
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      durations.push(ms);
      if (status !== 202) bad++;
    });
    return instance;
  };
  const shares = Array.from(
    { length: CONNECTIONS },
    (_, i) => Math.floor(rate / CONNECTIONS) + (i < rate % CONNECTIONS ? 1 : 0),
  );
  const results = await Promise.all(
    shares.map(async (share, i) => {
      await new Promise((resolve) => setTimeout(resolve, (i * 1000) / CONNECTIONS));
      return one(share);
    }),
  );

  durations.sort((a, b) => a - b);
  return {
    p50_ms: round(percentile(durations, 50), 2),
    p99_ms: round(percentile(durations, 99), 2),
    max_ms: round(durations[durations.length - 1] ?? NaN, 1),
    requests: durations.length,
    errors: bad + results.reduce((sum, r) => sum + r.errors + r.timeouts, 0),
  };
}

async function measure(rate: number, run: number) {
  const flush = new Redis(redis.url);
  await flush.flushall();
  await flush.quit();
  await backends.call('reset');

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = kitterEnv(redis.url, backends, {
    KITTER_WORKER_CONCURRENCY: String(CONCURRENCY),
  });
  const api = await startKitter('api', { ...env, PORT: String(port) }, apiAnswers(url));
  const bare = await startChild('bare-api.ts');
  const barePort = await bare.run<number>({});

  // A process serves warm: the first second of each, not measured, is for the JIT.
  await load(url, rate, `r${rate}-${run}-warm`, 2);
  await load(`http://127.0.0.1:${barePort}`, rate, `r${rate}-${run}-bare-warm`, 2);
  const idle = await load(url, rate, `r${rate}-${run}-idle`);

  // The worker starts with the queue the first load left, so it drains throughout.
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('provisioning', { connection, prefix: 'bench' });
  const worker = await startKitter('worker', { ...env, PORT: '0' }, async () => {
    return (await queue.getWorkersCount()) > 0;
  });
  const draining = await load(url, rate, `r${rate}-${run}-drain`);
  const baseline = await load(`http://127.0.0.1:${barePort}`, rate, `r${rate}-${run}-bare`);
  const left = await queue.getJobCounts('waiting', 'prioritized', 'active');
  const failed = (await queue.getJobCounts('failed')).failed;

  await worker.stop();
  await bare.stop();
  await api.stop();
  await queue.close();
  await connection.quit();
  return {
    kitter_no_worker: idle,
    kitter: draining,
    baseline,
    // Jobs still queued after the baseline's load: the worker drained throughout it.
    queued_after_baseline: left.waiting + left.prioritized + left.active,
    failed_jobs: failed,
  };
}

const rates = [];
for (const rate of RATES) {
  const runs: Array<Awaited<ReturnType<typeof measure>>> = [];
  for (let run = 0; run < RUNS; run++) {
    runs.push(await measure(rate, run));
    const { kitter, baseline } = runs[run];
    console.log(
      `  ${rate}/s run ${run + 1}/${RUNS}: kitter p50 ${kitter.p50_ms} p99 ${kitter.p99_ms} ms, ` +
        `baseline p50 ${baseline.p50_ms} p99 ${baseline.p99_ms} ms`,
    );
  }
  type Side = 'kitter' | 'kitter_no_worker' | 'baseline';
  const summary = (side: Side) => ({
    p50_ms: round(median(runs.map((r) => r[side].p50_ms)), 2),
    p99_ms: round(median(runs.map((r) => r[side].p99_ms)), 2),
    requests: median(runs.map((r) => r[side].requests)),
    errors: runs.reduce((sum, r) => sum + r[side].errors, 0),
  });
  const kitter = summary('kitter');
  const baseline = summary('baseline');
  rates.push({
    rate,
    kitter,
    kitter_no_worker: summary('kitter_no_worker'),
    baseline,
    p99_ratio: round(kitter.p99_ms / baseline.p99_ms, 2),
    runs,
  });
}

const result = {
  seconds: SECONDS,
  connections: CONNECTIONS,
  worker_concurrency: CONCURRENCY,
  latency_ms: LATENCY_MS,
  runs: RUNS,
  rates,
  target: { p99_ratio: 3, errors: 0 },
  machine: machine(),
};

console.log(
  `API latency, POST /users respond-async, ${CONNECTIONS} connections (median of ${RUNS})`,
);
for (const r of rates) {
  const line = (name: string, s: { p50_ms: number; p99_ms: number; errors: number }) =>
    console.log(
      `    ${name.padEnd(26)} p50 ${s.p50_ms} ms  p99 ${s.p99_ms} ms  errors ${s.errors}`,
    );
  console.log(`  ${r.rate} requests/s for ${SECONDS} s:`);
  line('kitter, worker draining', r.kitter);
  line('kitter, no worker', r.kitter_no_worker);
  line('baseline (bare Koa + joi)', r.baseline);
  console.log(`    p99 ratio ${r.p99_ratio} (target < 3, no errors)`);
}
await saveResult('api_latency', result);

await backends.close();
await redis.kill();
