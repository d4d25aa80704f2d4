/**
 * `npm run chaos`: the chaos run at full size. Figures can be changed with CHAOS_USERS,
 * CHAOS_WORKERS and CHAOS_KILL_EVERY_MS. It starts its own redis-server on a free port.
 */
import { startRedisServer } from '../support/redis.js';
import { runChaos } from './chaos.js';

const redis = await startRedisServer();
process.env.REDIS_URL = redis.url;

const report = await runChaos({
  users: Number(process.env.CHAOS_USERS ?? 2000),
  workers: Number(process.env.CHAOS_WORKERS ?? 2),
  killEveryMs: Number(process.env.CHAOS_KILL_EVERY_MS ?? 4000),
  errorRate: 0.05,
  dropRate: 0.01,
  loseAnswerRate: 0.01,
  log: (line) => console.log(`  ${line}`),
});
await redis.kill();

console.log(JSON.stringify(report, null, 2));
const clean = report.unfinished === 0 && report.lost === 0 && report.drift === 0;
console.log(clean ? 'chaos: every job ended, no drift' : 'chaos: FAILED, see the figures above');
process.exit(clean ? 0 : 1);
