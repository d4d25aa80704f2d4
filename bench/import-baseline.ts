/**
 * The import benchmark's baseline (`bench/import.ts`), in a fresh process of its own for each
 * run, as the API is: csv-parse of the file plus BullMQ `addBulk` of one job a row, with no
 * validation. Answers its rate, CPU and memory: RSS before it starts and its peak during it.
 */
import { createReadStream } from 'node:fs';

import { Queue } from 'bullmq';
import { parse } from 'csv-parse';
import { Redis } from 'ioredis';

import { peakRssMb, round, rssMb, serveChild } from './support.js';

export interface BaselineInput {
  file: string;
  redisUrl: string;
  rows: number;
  chunk: number;
}

export interface BaselineResult {
  rate: number;
  cpu: number;
  rssBefore: number;
  peakRss: number;
}

serveChild(async ({ file, redisUrl, rows, chunk: size }: BaselineInput) => {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('provisioning', { connection, prefix: 'bench-baseline' });
  await queue.waitUntilReady();
  const rssBefore = await rssMb(process.pid);
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();

  let header: string[] | undefined;
  let chunk: Array<{ name: string; data: unknown; opts: { jobId: string; priority: number } }> = [];
  let row = 1;
  for await (const cells of createReadStream(file).pipe(parse({ bom: true }))) {
    if (!header) {
      header = cells as string[];
      continue;
    }
    row++;
    const record = Object.fromEntries(header.map((name, i) => [name, (cells as string[])[i]]));
    chunk.push({
      name: 'user.create',
      data: { v: 1, user: record, import: { id: 'baseline', row } },
      opts: { jobId: `imp-baseline-r${row}`, priority: 10 },
    });
    if (chunk.length === size) {
      await queue.addBulk(chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) await queue.addBulk(chunk);

  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const { user, system } = process.cpuUsage(cpuBefore);
  const peakRss = await peakRssMb(process.pid);
  await queue.close();
  await connection.quit();
  return {
    rate: Math.round(rows / seconds),
    cpu: round((user + system) / 1e6, 2),
    rssBefore,
    peakRss,
  } satisfies BaselineResult;
});
