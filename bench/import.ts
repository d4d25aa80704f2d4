/**
 * Import throughput and the API's memory: uploads a 100 000-row CSV file to a kitter API
 * process and reports rows validated and queued per second, beside a baseline measured in the
 * same run: csv-parse of the same file plus BullMQ addBulk of the same jobs, with no
 * validation (`import-baseline.ts`, a fresh process each run). Also the peak resident memory of
 * the API during the upload, and of the baseline's process.
 *
 *   npm run bench:import            (BENCH_ROWS=100000, BENCH_RUNS=3; medians are reported)
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';

import { Redis } from 'ioredis';

import { startKeycloakEmulator } from '../src/emulators/keycloak.js';
import { startWacCoreEmulator } from '../src/emulators/wac-core.js';
import { freePort, startRedisServer } from '../test/support/redis.js';
import {
  apiAnswers,
  cpuSeconds,
  machine,
  median,
  pairedRatio,
  peakRssMb,
  round,
  rssMb,
  RUNS,
  saveResult,
  startChild,
  startKitter,
} from './support.js';
import type { BaselineResult } from './import-baseline.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const CHUNK = 500;
const TOKEN = 'bench-token-0123456789abcdef';

const redis = await startRedisServer();
const keycloak = await startKeycloakEmulator({
  clients: [{ clientId: 'kitter', clientSecret: 'bench-secret' }],
});
const wac = await startWacCoreEmulator({ verifyToken: (token) => keycloak.verifyToken(token) });
wac.seedDomain({ domain: 'example.com' });

const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-bench-'));
const file = path.join(dir, 'users.csv');
const lines = ['username,email,first_name,last_name,password,domain,phone_number'];
for (let i = 0; i < ROWS; i++) {
  lines.push(
    `user${i},user${i}@example.com,First${i},Last${i},Pass-${i}-word,example.com,+3460${i}`,
  );
}
await writeFile(file, `${lines.join('\n')}\n`);
const megabytes = (Buffer.byteLength(lines.join('\n')) / 1024 / 1024).toFixed(1);

const runs: Array<{
  kitter_rows_per_s: number;
  baseline_rows_per_s: number;
  rss_mb: number;
  api_rss_before_mb: number;
  baseline_peak_rss_mb: number;
  baseline_rss_before_mb: number;
  kitter_cpu_s: number;
  baseline_cpu_s: number;
}> = [];
for (let run = 0; run < RUNS; run++) {
  await flush();
  const baseline = await runBaseline();
  await flush();
  const kitter = await runKitter();
  runs.push({
    kitter_rows_per_s: kitter.rate,
    baseline_rows_per_s: baseline.rate,
    rss_mb: kitter.rss,
    api_rss_before_mb: kitter.rssBefore,
    baseline_peak_rss_mb: baseline.peakRss,
    baseline_rss_before_mb: baseline.rssBefore,
    kitter_cpu_s: kitter.cpu,
    baseline_cpu_s: baseline.cpu,
  });
  console.log(`  run ${run + 1}/${RUNS}: ${JSON.stringify(runs[run])}`);
}
const kitterRate = median(runs.map((r) => r.kitter_rows_per_s));
const baselineRate = median(runs.map((r) => r.baseline_rows_per_s));
const rss = median(runs.map((r) => r.rss_mb));
const apiBefore = median(runs.map((r) => r.api_rss_before_mb));
const baselinePeak = median(runs.map((r) => r.baseline_peak_rss_mb));
const baselineBefore = median(runs.map((r) => r.baseline_rss_before_mb));
const kitterCpu = median(runs.map((r) => r.kitter_cpu_s));
const baselineCpu = median(runs.map((r) => r.baseline_cpu_s));

const result = {
  rows: ROWS,
  file_mb: Number(megabytes),
  runs: RUNS,
  kitter_rows_per_s: kitterRate,
  baseline_rows_per_s: baselineRate,
  ratio: pairedRatio(
    runs.map((r) => r.kitter_rows_per_s),
    runs.map((r) => r.baseline_rows_per_s),
  ),
  ratio_of_medians: Math.round((kitterRate / baselineRate) * 100) / 100,
  api_peak_rss_mb: rss,
  // The API's RSS just before the upload: started, idle.
  api_rss_before_mb: apiBefore,
  // The baseline's process (fresh each run, with tsx loaded): its peak, and its RSS before.
  baseline_peak_rss_mb: baselinePeak,
  baseline_rss_before_mb: baselineBefore,
  // CPU seconds of the import: the API process (all its threads) against the baseline's.
  kitter_cpu_s: kitterCpu,
  baseline_cpu_s: baselineCpu,
  targets: { ratio: 0.7, api_peak_rss_mb: 150 },
  node_args: process.env.BENCH_NODE_ARGS ?? '',
  each_run: runs,
  machine: machine(),
};
console.log(`import of ${ROWS} rows (${megabytes} MB), median of ${RUNS}`);
console.log(`  kitter API:  ${kitterRate} rows/s validated and queued`);
console.log(`  baseline:    ${baselineRate} rows/s (csv-parse + addBulk, no validation)`);
console.log(`  ratio:       ${result.ratio} (target >= 0.7)`);
console.log(`  API peak RSS: ${rss} MB (target < 150 MB; ${apiBefore} MB idle before the upload)`);
console.log(`  baseline peak RSS: ${baselinePeak} MB (${baselineBefore} MB before its run)`);
console.log(`  CPU: API ${kitterCpu} s (all its threads), baseline ${baselineCpu} s`);
await saveResult('import', result);

await rm(dir, { recursive: true, force: true });
await wac.close();
await keycloak.close();
await redis.kill();

/** Each measurement starts from an empty Redis (the baseline's job ids repeat). */
async function flush(): Promise<void> {
  const connection = new Redis(redis.url);
  await connection.flushall();
  await connection.quit();
}

/** What the import path does at its least, in a process of its own: see import-baseline.ts. */
async function runBaseline(): Promise<BaselineResult> {
  const child = await startChild('import-baseline.ts');
  try {
    return await child.run<BaselineResult>({ file, redisUrl: redis.url, rows: ROWS, chunk: CHUNK });
  } finally {
    await child.stop();
  }
}

async function runKitter(): Promise<{ rate: number; rss: number; rssBefore: number; cpu: number }> {
  const port = await freePort();
  const api = await startKitter(
    'api',
    {
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redis.url,
      KITTER_QUEUE_PREFIX: 'bench-kitter',
      KEYCLOAK_URL: keycloak.url,
      KEYCLOAK_CLIENT_SECRET: 'bench-secret',
      WAC_CORE_URL: wac.baseUrl,
      KITTER_API_TOKENS: TOKEN,
      KITTER_SECRET_KEY: 'bench-secret-key-0123456789',
    },
    apiAnswers(`http://127.0.0.1:${port}`),
  );

  const rssBefore = await rssMb(api.child.pid!);
  const cpuBefore = await cpuSeconds(api.child.pid!);
  const started = process.hrtime.bigint();
  const response = await fetch(`http://127.0.0.1:${port}/imports`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/csv' },
    body: Readable.toWeb(createReadStream(file)) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const body = (await response.json()) as { import: { valid: number } };
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (response.status !== 202 || body.import.valid !== ROWS) {
    throw new Error(`the import failed: ${response.status} ${JSON.stringify(body)}`);
  }

  const cpu = round((await cpuSeconds(api.child.pid!)) - cpuBefore, 2);
  const rss = await peakRssMb(api.child.pid!);
  await api.stop();
  return { rate: Math.round(ROWS / seconds), rss, rssBefore, cpu };
}
