import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';

import type { DomainLookup } from '../api/domain-lookup.js';
import { ApiError, type ErrorCode } from '../errors.js';
import { ChunkAddFault } from '../jobs/chunk-add.js';
import type { JobGateway } from '../jobs/gateway.js';
import { JOB_TYPES } from '../jobs/queues.js';
import type { ChunkJobs, Counts, ReaderInput, ReaderMessage, ReaderReply } from './reader.js';
import type { ErrorRow, ImportStore } from './store.js';

export interface IngestDeps {
  store: ImportStore;
  gateway: JobGateway;
  domains: DomainLookup;
  /** KITTER_SECRET_KEY: the reader seals each row's passwords with it. */
  secretKey: string;
}

/** Round trips to Redis under way at once while a file is read. */
const WRITES_IN_FLIGHT = 4;

/** Import rows wait behind single requests: a large import never holds up `POST /users`. */
export const IMPORT_PRIORITY = 10;

/**
 * The reader's memory, whatever the file's size: it holds a few chunks of rows at a time, and
 * a heap it may not outgrow keeps V8 from letting it swell with garbage between collections.
 * The cap is no safety net: a thread that reaches it with one large allocation (a Map growing)
 * aborts the whole process rather than ending alone (nodejs/node#47224; a million usernames
 * kept here did so), so the reader keeps nothing that grows with the file.
 */
const READER_LIMITS = { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 };

export interface IngestOptions {
  id: string;
  dryRun: boolean;
  filename?: string;
  /** The file's character set, when the upload names one (`text/csv; charset=…`). */
  charset?: string;
  /** Kept with the import, for a repeat under the same `Idempotency-Key` to be compared. */
  fingerprint: string;
  requestId?: string;
}

/**
 * Turns an uploaded file's valid rows into `user.create` jobs, a chunk at a time. A reader
 * thread (`reader.ts`) parses and checks the file; this side records what it finds and writes
 * the chunks to Redis while the reader goes on. The header is checked before anything is
 * written: a file with an unknown column, or without `username` or `domain`, is refused whole.
 * Each row's job id comes from the import and the row number, so the same file sent again
 * under the same import queues no row twice.
 */
export async function ingest(deps: IngestDeps, path: string, options: IngestOptions) {
  const { id } = options;
  const reader = startReader({
    path,
    importId: id,
    dryRun: options.dryRun,
    charset: options.charset,
    requestId: options.requestId,
    secretKey: deps.secretKey,
  });
  const reply = (message: ReaderReply, transfer: ArrayBuffer[] = []) =>
    reader.worker.postMessage(message, transfer);

  // Writes to Redis go out while the reader goes on, a few at a time. They keep their order on
  // the one connection: each chunk's last-row mark lands before its rows.
  const writes = new InFlight(WRITES_IN_FLIGHT);
  let cancelled = false;

  const write = async (jobs: ChunkJobs | undefined, rejected: ErrorRow[], read: Counts) => {
    await throughBlips(() => {
      const work: Array<Promise<unknown>> = [
        deps.store.rejectRows(id, rejected),
        deps.store.readSoFar(id, read),
      ];
      if (jobs) {
        const { gateway, store } = deps;
        work.push(store.queuedUpTo(id, jobs.lastRow));
        work.push(gateway.submitPacked(JOB_TYPES.userCreate, jobs, { priority: IMPORT_PRIORITY }));
        work.push(store.isCancelled(id).then((yes) => (cancelled ||= yes)));
      }
      return Promise.all(work);
    });
    // The buffer goes back to the reader, to be filled again (see `ReaderReply`).
    const buffer = jobs?.lines.buffer as ArrayBuffer | undefined;
    reply({ type: 'written', buffer }, buffer ? [buffer] : []);
  };

  // This read's usernames (see `ImportStore.claimNames`), deleted when it ends, however it
  // ends; they expire on their own when Redis is away then.
  const read = randomUUID();

  try {
    for await (const message of reader.messages()) {
      switch (message.type) {
        case 'header':
          await throughBlips(() =>
            deps.store.create(id, {
              dryRun: options.dryRun,
              filename: options.filename,
              fingerprint: options.fingerprint,
              layout: message.layout,
            }),
          );
          break;
        case 'domain': {
          const known = (await deps.domains.byName(message.name)) !== undefined;
          reply({ type: 'domain', name: message.name, known });
          break;
        }
        case 'names': {
          const { names } = message;
          const earlier = await throughBlips(() => deps.store.claimNames(id, read, names));
          reply({ type: 'names', earlier });
          break;
        }
        case 'rows':
          await writes.add(write(message.jobs, message.rejected, message.read));
          break;
        case 'done':
          await writes.drain();
          if (!cancelled) await throughBlips(() => deps.store.uploaded(id, message.counts));
          return;
        case 'refused':
          throw new ApiError(
            message.status,
            message.code as ErrorCode,
            message.message,
            message.details as ApiError['details'],
          );
      }
      if (cancelled) return;
    }
    throw new Error('the import reader stopped before the end of the file');
  } finally {
    // Every write under way has ended, one way or the other, before the request is answered.
    await writes.settle();
    await reader.worker.terminate();
    await deps.store.forgetNames(id, read).catch(() => undefined);
  }
}

/** How long each try waits before the next, while Redis is away: about 8 s in all. */
const BLIP_WAITS_MS = [250, 500, 1000, 2000, 4000];

/**
 * Runs a write to Redis, and again while Redis is away for a moment (a failover, a restart): a
 * file of minutes is not lost to a blip of seconds. Every write of an import can be made twice:
 * jobs keep their ids, refused rows their numbers, and the last row queued only grows.
 */
async function throughBlips<T>(write: () => Promise<T>): Promise<T> {
  for (const waitMs of BLIP_WAITS_MS) {
    try {
      return await write();
    } catch (err) {
      // A fault of the code, not of Redis: trying again would only put off the answer.
      if (err instanceof ChunkAddFault) throw err;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
  return write();
}

/**
 * Starts a reader thread. Built, it runs `reader.js`; from the sources (tests, the demo) the
 * thread registers tsx first, as the process itself did.
 */
function startReader(input: ReaderInput) {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fromSource ? './reader-from-source.mjs' : './reader.js';
  const worker = new Worker(new URL(entry, import.meta.url), {
    workerData: { reader: input },
    resourceLimits: READER_LIMITS,
  });

  const queue: ReaderMessage[] = [];
  let failure: Error | undefined;
  let exited = false;
  let wake: (() => void) | undefined;
  const poke = () => wake?.();
  worker.on('message', (message: ReaderMessage) => (queue.push(message), poke()));
  worker.on('error', (err) => ((failure = err), poke()));
  worker.on('exit', () => ((exited = true), poke()));

  /** The thread's messages in order; ends when it exits, throws if it failed. */
  async function* messages(): AsyncGenerator<ReaderMessage> {
    for (;;) {
      if (queue.length > 0) {
        yield queue.shift()!;
        continue;
      }
      if (failure) throw failure;
      if (exited) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }

  return { worker, messages };
}

/** Promises under way, at most `limit`: adding one more waits for the oldest. */
class InFlight {
  private readonly pending: Array<Promise<unknown>> = [];

  constructor(private readonly limit: number) {}

  async add(work: Promise<unknown>): Promise<void> {
    // Failures surface when the promise is awaited below, not as unhandled rejections.
    work.catch(() => undefined);
    this.pending.push(work);
    if (this.pending.length >= this.limit) await this.pending.shift();
  }

  async drain(): Promise<void> {
    while (this.pending.length > 0) await this.pending.shift();
  }

  /** Waits for all, failed or not. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
  }
}
