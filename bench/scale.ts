/**
 * Scale: the provisioning benchmark with 1, 2 and 4 worker processes against one Redis (one
 * API), each KITTER_WORKER_CONCURRENCY=C, beside as many direct-call processes with C each.
 * Shows throughput growing until the backends' latency and the machine's cores bound it.
 * Medians of BENCH_RUNS runs.
 *
 *   npm run bench:scale            (BENCH_WORKERS=1,2,4 BENCH_USERS=5000 BENCH_CONCURRENCY=50)
 */
import { startRedisServer } from '../test/support/redis.js';
import { measureDirect, measureKitter, type Setup } from './provisioning-run.js';
import {
  LATENCY_MS,
  machine,
  median,
  pairedRatio,
  round,
  RUNS,
  saveResult,
  startBackends,
} from './support.js';

const WORKERS = (process.env.BENCH_WORKERS ?? '1,2,4').split(',').map(Number);
const USERS = Number(process.env.BENCH_USERS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);

const redis = await startRedisServer();
const backends = await startBackends();

const steps = [];
for (const processes of WORKERS) {
  const setup: Setup = {
    redisUrl: redis.url,
    backends,
    users: USERS,
    concurrency: CONCURRENCY,
    processes,
  };
  const kitter = [];
  const direct = [];
  for (let run = 0; run < RUNS; run++) {
    direct.push(await measureDirect(setup, `sd${processes}-${run}`));
    kitter.push(await measureKitter(setup, `sk${processes}-${run}`));
    console.log(
      `  ${processes} process(es), run ${run + 1}/${RUNS}: kitter ${kitter[run].users_per_s} ` +
        `users/s, direct ${direct[run].users_per_s} users/s`,
    );
  }
  const kitterRate = median(kitter.map((m) => m.users_per_s));
  const directRate = median(direct.map((m) => m.users_per_s));
  steps.push({
    processes,
    kitter_users_per_s: kitterRate,
    baseline_users_per_s: directRate,
    ratio: pairedRatio(
      kitter.map((m) => m.users_per_s),
      direct.map((m) => m.users_per_s),
    ),
    ratio_of_medians: round(kitterRate / directRate, 2),
    // What C x processes jobs in flight allow at most, were CPU free: 5 calls on the path.
    latency_bound_users_per_s: round((CONCURRENCY * processes * 1000) / (5 * LATENCY_MS)),
    kitter_runs: kitter,
    baseline_runs: direct,
  });
}

const result = {
  users: USERS,
  concurrency: CONCURRENCY,
  latency_ms: LATENCY_MS,
  runs: RUNS,
  steps,
  machine: machine(),
};
console.log(`scale: ${USERS} users, concurrency ${CONCURRENCY} a process (median of ${RUNS})`);
for (const step of steps) {
  console.log(
    `  ${step.processes} worker(s): kitter ${step.kitter_users_per_s} users/s, direct ` +
      `${step.baseline_users_per_s} users/s (ratio ${step.ratio}; latency bound ` +
      `${step.latency_bound_users_per_s})`,
  );
}
await saveResult('scale', result);

await backends.close();
await redis.kill();
