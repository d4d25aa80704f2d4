/**
 * Memory: the peak resident memory (VmHWM) of the API and of a worker through the provisioning
 * benchmark, at 1 000 and at 10 000 users: neither should grow with the number of jobs. Beside
 * them, the direct-call baseline process's peak for the same users. Medians of BENCH_RUNS runs.
 *
 *   npm run bench:memory           (BENCH_MEMORY_USERS=1000,10000 BENCH_CONCURRENCY=50)
 */
import { startRedisServer } from '../test/support/redis.js';
import { measureDirect, measureKitter, type Setup } from './provisioning-run.js';
import { LATENCY_MS, machine, median, RUNS, saveResult, startBackends } from './support.js';

const SIZES = (process.env.BENCH_MEMORY_USERS ?? '1000,10000').split(',').map(Number);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);

const redis = await startRedisServer();
const backends = await startBackends();

const sizes = [];
for (const users of SIZES) {
  const setup: Setup = {
    redisUrl: redis.url,
    backends,
    users,
    concurrency: CONCURRENCY,
    processes: 1,
  };
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    const direct = await measureDirect(setup, `md${users}-${run}`);
    const kitter = await measureKitter(setup, `mk${users}-${run}`);
    runs.push({
      api_mb: kitter.peak_rss_mb.api,
      worker_mb: kitter.peak_rss_mb.worker1,
      baseline_mb: direct.peak_rss_mb.direct1,
      kitter_users_per_s: kitter.users_per_s,
    });
    console.log(`  ${users} users, run ${run + 1}/${RUNS}: ${JSON.stringify(runs[run])}`);
  }
  sizes.push({
    users,
    api_peak_rss_mb: median(runs.map((r) => r.api_mb)),
    worker_peak_rss_mb: median(runs.map((r) => r.worker_mb)),
    baseline_peak_rss_mb: median(runs.map((r) => r.baseline_mb)),
    runs,
  });
}

const result = {
  concurrency: CONCURRENCY,
  latency_ms: LATENCY_MS,
  runs: RUNS,
  sizes,
  machine: machine(),
};
console.log(`peak RSS through provisioning (median of ${RUNS}), MB`);
for (const size of sizes) {
  console.log(
    `  ${String(size.users).padStart(6)} users: API ${size.api_peak_rss_mb}, ` +
      `worker ${size.worker_peak_rss_mb}, direct baseline ${size.baseline_peak_rss_mb}`,
  );
}
await saveResult('memory', result);

await backends.close();
await redis.kill();
