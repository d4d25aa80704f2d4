/**
 * Two builds side by side: benchmark 1 (provisioning) alternating the direct baseline, a build
 * named by BENCH_COMPARE (A, say a copy of `dist` made before a change) and the build in `dist`
 * (B), in one run, so that a change too small for the host's drift between runs shows in each
 * run's B/A ratio and in the CPU figures.
 *
 *   cp -r dist dist-a; (change, npm run build)
 *   BENCH_COMPARE=dist-a npx tsx bench/compare.ts      (A = dist-a, B = dist)
 *
 * Or one build with other node flags for A: BENCH_COMPARE=dist BENCH_COMPARE_API_NODE_ARGS=...
 * (and BENCH_COMPARE_WORKER_NODE_ARGS); B starts as bench:provisioning starts it.
 * Same knobs as bench:provisioning (BENCH_USERS, BENCH_CONCURRENCY, BENCH_RUNS, default 4).
 * Prints each run and the medians; saves nothing.
 */
import { startRedisServer } from '../test/support/redis.js';
import { measureDirect, measureKitter, type Measurement, type Setup } from './provisioning-run.js';
import { median, round, startBackends } from './support.js';

const A = process.env.BENCH_COMPARE;
if (!A) {
  console.error('BENCH_COMPARE=<another build in the project, e.g. dist-a> is required');
  process.exit(2);
}
const B = process.env.BENCH_DIST ?? 'dist';
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 4));

const redis = await startRedisServer();
const backends = await startBackends();
const setup: Setup = {
  redisUrl: redis.url,
  backends,
  users: Number(process.env.BENCH_USERS ?? 5000),
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 50),
  processes: 1,
};

/** Each side's node flags, as bench/support.ts reads them (unset: the usual ones). */
const env = process.env;
const flagsOf = {
  a: {
    API_NODE_ARGS: env.BENCH_COMPARE_API_NODE_ARGS ?? env.BENCH_API_NODE_ARGS,
    WORKER_NODE_ARGS: env.BENCH_COMPARE_WORKER_NODE_ARGS ?? env.BENCH_WORKER_NODE_ARGS,
  },
  b: { API_NODE_ARGS: env.BENCH_API_NODE_ARGS, WORKER_NODE_ARGS: env.BENCH_WORKER_NODE_ARGS },
};

async function measure(side: 'a' | 'b', run: string): Promise<Measurement> {
  env.BENCH_DIST = side === 'a' ? A : B;
  for (const [name, value] of Object.entries(flagsOf[side])) {
    if (value === undefined) delete env[`BENCH_${name}`];
    else env[`BENCH_${name}`] = value;
  }
  return measureKitter(setup, run);
}

const rows: Array<{ direct: Measurement; a: Measurement; b: Measurement }> = [];
try {
  await compare();
} finally {
  await backends.close();
  await redis.kill();
}

async function compare() {
  for (let run = 0; run < RUNS; run++) {
    // The order turns each run, so neither build always follows the baseline.
    const direct = await measureDirect(setup, `d${run}`);
    const [first, second] = run % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const);
    const one = await measure(first, `${run}x`);
    const two = await measure(second, `${run}y`);
    const [a, b] = run % 2 === 0 ? [one, two] : [two, one];
    rows.push({ direct, a, b });
    console.log(
      `  run ${run + 1}/${RUNS}: direct ${direct.users_per_s}, A ${a.users_per_s} ` +
        `(${round(a.users_per_s / direct.users_per_s, 2)}), B ${b.users_per_s} ` +
        `(${round(b.users_per_s / direct.users_per_s, 2)}) users/s, B/A ` +
        `${round(b.users_per_s / a.users_per_s, 3)}; CPU s/1000 A ` +
        `${JSON.stringify(a.cpu_s_per_1000)} B ${JSON.stringify(b.cpu_s_per_1000)}`,
    );
  }

  const ratio = (side: 'a' | 'b') =>
    round(median(rows.map((row) => row[side].users_per_s / row.direct.users_per_s)), 3);
  const cpu = (side: 'a' | 'b', name: string) =>
    round(median(rows.map((row) => row[side].cpu_s_per_1000[name] ?? 0)), 2);
  console.log(`provisioning, ${setup.users} users, A = ${A}, B = ${B}, median of ${RUNS}`);
  for (const side of ['a', 'b'] as const) {
    console.log(
      `  ${side.toUpperCase()}: ratio ${ratio(side)}, CPU s/1000 users: API ${cpu(side, 'api')}, ` +
        `worker ${cpu(side, 'worker1')}, Redis ${cpu(side, 'redis')}`,
    );
  }
  const paired = median(rows.map((row) => row.b.users_per_s / row.a.users_per_s));
  const ahead = rows.filter((row) => row.b.users_per_s > row.a.users_per_s).length;
  console.log(`  B/A: ${round(paired, 3)} (median of the runs'), B ahead in ${ahead} of ${RUNS}`);
}
