/**
 * The figures every benchmark saved last in bench/results.json, one line each.
 *
 *   npm run bench:summary
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { ROOT } from './support.js';

const all = JSON.parse(await readFile(path.join(ROOT, 'bench', 'results.json'), 'utf8'));
const when = (r: { machine?: { date?: string } }) => r.machine?.date?.slice(0, 16) ?? '?';
const lines: string[] = [];

const p = all.provisioning;
if (p) {
  lines.push(
    `provisioning  ${p.kitter_users_per_s} users/s vs direct ${p.baseline_users_per_s} ` +
      `(ratio ${p.ratio}, target >= 0.9)  [${p.users} users, C=${p.concurrency}, ${when(p)}]`,
  );
}
for (const r of all.api_latency?.rates ?? []) {
  lines.push(
    `api latency   ${r.rate}/s: p99 ${r.kitter.p99_ms} ms vs bare ${r.baseline.p99_ms} ms ` +
      `(ratio ${r.p99_ratio}, target < 3), p50 ${r.kitter.p50_ms} ms, errors ` +
      `${r.kitter.errors}  [${when(all.api_latency)}]`,
  );
}
const s = all.sync_latency;
if (s) {
  lines.push(
    `sync latency  p50 ${s.kitter.p50_ms} ms vs direct ${s.baseline.p50_ms} ms: the queue adds ` +
      `${s.queue_added_p50_ms} ms (target < 10); ${s.added_p50_ms} ms over the fixed ` +
      `${s.fixed_backend_ms} ms  [${when(s)}]`,
  );
}
const l = all.logout;
if (l) {
  lines.push(
    `logout        ${l.kitter_users_per_s} users/s vs direct ${l.baseline_users_per_s} ` +
      `(ratio ${l.ratio})  [${l.users} users, fan-out ${l.fan_out}, ${when(l)}]`,
  );
}
for (const m of all.memory?.sizes ?? []) {
  lines.push(
    `memory        ${m.users} users: API ${m.api_peak_rss_mb} MB, worker ` +
      `${m.worker_peak_rss_mb} MB (direct ${m.baseline_peak_rss_mb} MB)  [${when(all.memory)}]`,
  );
}
for (const step of all.scale?.steps ?? []) {
  lines.push(
    `scale         ${step.processes} worker(s): ${step.kitter_users_per_s} users/s vs direct ` +
      `${step.baseline_users_per_s} (ratio ${step.ratio})  [${when(all.scale)}]`,
  );
}
const i = all.import;
if (i) {
  lines.push(
    `import        ${i.kitter_rows_per_s} rows/s vs ${i.baseline_rows_per_s} (ratio ${i.ratio}, ` +
      `target >= 0.7), API peak ${i.api_peak_rss_mb} MB (target < 150)  [${when(i)}]`,
  );
}
console.log(lines.join('\n'));
