import { createReadStream } from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';

import { ApiError } from '../errors.js';
import type { PackedJobs } from '../jobs/chunk-add.js';
import { SecretBox } from '../jobs/secrets.js';
import type { UserCreateData } from '../jobs/types.js';
import { orderKeyOfUser, splitSecrets, type UserInput } from '../model/users.js';
import { cellsOf, publicCells, readHeader, userOfRow, type RowCells } from './columns.js';
import { earlierRowsOf, packNames } from './names.js';
import { readCsv } from './parse.js';
import type { ErrorRow, FileLayout } from './store.js';

/**
 * The reading side of an import, in a thread of its own (see `ingest.ts`): it parses the file,
 * checks every row with the rules of `POST /users`, seals the passwords and builds each valid
 * row's job, while the API's own thread writes the chunks before to Redis and answers other
 * requests.
 */

/** What the thread is given. */
export interface ReaderInput {
  path: string;
  importId: string;
  dryRun: boolean;
  /** The file's character set, when the upload names one other than UTF-8 (see `asUtf8`). */
  charset?: string;
  requestId?: string;
  /** KITTER_SECRET_KEY, to seal the passwords of each row as the API seals a request's. */
  secretKey: string;
}

/** A chunk's valid rows as jobs, built here so that the API's thread only passes them on. */
export interface ChunkJobs extends PackedJobs {
  /** The file's row of the last job. */
  lastRow: number;
}

/** A row that is valid unless its username is on an earlier row or its domain unknown. */
interface Candidate {
  user: UserInput;
  domainKnown: boolean;
  row: number;
  cells: RowCells;
}

/** From the thread to the API's thread. */
export type ReaderMessage =
  | { type: 'header'; layout: FileLayout }
  | { type: 'domain'; name: string }
  /**
   * Usernames and their rows (`packNames`): which did the file have before? Rows refused for
   * another reason are not earlier rows for those after them.
   */
  | { type: 'names'; names: string }
  /** A chunk, and the counts of the rows read so far, this chunk's included. */
  | { type: 'rows'; jobs?: ChunkJobs; rejected: ErrorRow[]; read: Counts }
  | { type: 'done'; counts: Counts }
  | { type: 'refused'; status: number; code: string; message: string; details?: unknown };

/** Rows of the file: read, valid (queued, or to be on a dry run) and refused. */
export interface Counts {
  total: number;
  valid: number;
  invalid: number;
}

/** From the API's thread to the reader. */
export type ReaderReply =
  | { type: 'domain'; name: string; known: boolean }
  /** The usernames asked that an earlier row has: index and row, in pairs (`claimNames`). */
  | { type: 'names'; earlier: number[] }
  /**
   * A chunk sent earlier has been written: the reader may send one more. Its jobs' buffer comes
   * back with it, for the reader to fill again: the API's thread then frees no buffer, which V8
   * would hand back only at its next full collection (tens of megabytes over an import).
   */
  | { type: 'written'; buffer?: ArrayBuffer };

/** Answers on domains the reader keeps, at most. */
const DOMAINS_KEPT = 10_000;

/** Rows a message carries (and so a round trip to Redis writes), at most. */
const CHUNK = 500;

/**
 * And the cells' characters a message carries, at most: 500 rows of spreadsheet cells are tens
 * of kilobytes, but a row may be 64 KiB (see `parse.ts`), and 500 of those would outgrow the
 * reader's heap, and the API's with it.
 */
const CHUNK_CHARS = 1024 * 1024;

/**
 * Chunks sent and not yet written, at most: the API's thread keeps a few writes in flight and
 * one or two ready behind them; the reader waits beyond that, so a file never piles up in memory.
 */
const CHUNKS_AHEAD = 6;

class Reader {
  private readonly secrets: SecretBox;
  private readonly domainKnown = new Map<string, boolean>();
  private readonly asked = new Map<string, (known: boolean) => void>();
  private namesAnswered: ((earlier: number[]) => void) | undefined;
  private unwritten = 0;
  /** Buffers of chunks written, to be filled again. */
  private readonly spare: Uint8Array[] = [];
  private wakeWriter: (() => void) | undefined;

  constructor(
    private readonly input: ReaderInput,
    private readonly port: MessagePort,
  ) {
    this.secrets = new SecretBox(input.secretKey);
    port.on('message', (reply: ReaderReply) => {
      if (reply.type === 'domain') {
        this.asked.get(reply.name)?.(reply.known);
        this.asked.delete(reply.name);
      } else if (reply.type === 'names') {
        this.namesAnswered?.(reply.earlier);
      } else {
        this.unwritten--;
        if (reply.buffer) this.spare.push(new Uint8Array(reply.buffer));
        this.wakeWriter?.();
      }
    });
  }

  private post(message: ReaderMessage, transfer: ArrayBuffer[] = []): void {
    this.port.postMessage(message, transfer);
  }

  async run(): Promise<void> {
    // A first quick pass over the whole file: a header it refuses or a line that is not CSV (an
    // unclosed quote) refuses the file before any row is queued.
    await checkSyntax(this.input.path, this.input.charset);

    const file = await readCsv(createReadStream(this.input.path), this.input.charset);
    const layout = readHeader(file.header);
    const columns = layout.map(([column]) => column);
    const headers = layout.map(([, index]) => file.header[index].trim());
    const { delimiter, crlf } = file;
    this.post({ type: 'header', layout: { columns, headers, delimiter, crlf } });

    const width = Math.max(...layout.map(([, index]) => index)) + 1;
    const counts: Counts = { total: 0, valid: 0, invalid: 0 };
    let candidates: Candidate[] = [];
    let rejected: ErrorRow[] = [];
    let chars = 0;

    for await (const record of file.records) {
      counts.total++;
      for (const cell of record.cells) chars += cell.length;
      const cells = cellsOf(layout, record.cells);
      const result = await this.checkRow(cells, record.cells.slice(width));

      if ('reason' in result) {
        counts.invalid++;
        rejected.push({ row: record.row, cells: publicCells(cells), reason: result.reason });
      } else {
        candidates.push({ ...result, row: record.row, cells });
      }

      if (candidates.length >= CHUNK || rejected.length >= CHUNK || chars >= CHUNK_CHARS) {
        await this.send(await this.chunkOf(candidates, rejected, counts), counts);
        candidates = [];
        rejected = [];
        chars = 0;
      }
    }
    if (candidates.length > 0 || rejected.length > 0) {
      await this.send(await this.chunkOf(candidates, rejected, counts), counts);
    }
    this.post({ type: 'done', counts });
  }

  /**
   * The chunk's jobs and refused rows, once the usernames are checked against the file's
   * earlier rows (in Redis, see `ImportStore.claimNames`). A username repeated is the reason
   * given before an unknown domain; only a row otherwise valid counts as an earlier row.
   */
  private async chunkOf(
    candidates: Candidate[],
    rejected: ErrorRow[],
    counts: { valid: number; invalid: number },
  ): Promise<{ jobs: ChunkBuilder; rejected: ErrorRow[] }> {
    const jobs = new ChunkBuilder();
    const firsts = candidates.length > 0 ? await this.earlierRows(candidates) : [];
    candidates.forEach(({ user, domainKnown, row, cells }, i) => {
      const reason = firsts[i]
        ? `username "${user.username}" is on row ${firsts[i]} already`
        : !domainKnown
          ? `domain "${user.attributes.domain}" does not exist`
          : undefined;
      if (reason) {
        counts.invalid++;
        rejected.push({ row, cells: publicCells(cells), reason });
      } else {
        counts.valid++;
        if (!this.input.dryRun) this.addJob(jobs, user, row, cells);
      }
    });
    return { jobs, rejected };
  }

  /** Asked of the API's thread, which holds the Redis connection. */
  private async earlierRows(candidates: Candidate[]): Promise<number[]> {
    const earlier = await new Promise<number[]>((resolve) => {
      this.namesAnswered = resolve;
      const entries = candidates.map(({ user, row, domainKnown }) => ({
        name: user.username,
        row,
        register: domainKnown,
      }));
      this.post({ type: 'names', names: packNames(entries) });
    });
    return earlierRowsOf(candidates.length, earlier);
  }

  /** Sends a chunk; waits first while the API's thread has too many still to write. */
  private async send(
    { jobs, rejected }: { jobs: ChunkBuilder; rejected: ErrorRow[] },
    counts: Counts,
  ) {
    while (this.unwritten >= CHUNKS_AHEAD) {
      await new Promise<void>((resolve) => (this.wakeWriter = resolve));
    }
    this.unwritten++;
    const built = jobs.built(this.spare);
    this.post(
      { type: 'rows', jobs: built, rejected, read: { ...counts } },
      built ? [built.lines.buffer as ArrayBuffer] : [],
    );
  }

  /**
   * A row's user and whether its domain exists, or why it is refused: the rules of
   * `POST /users`, once per file.
   */
  private async checkRow(
    cells: RowCells,
    extra: string[],
  ): Promise<{ user: UserInput; domainKnown: boolean } | { reason: string }> {
    const result = userOfRow(cells, extra);
    if ('reason' in result) return result;
    return {
      user: result.user,
      domainKnown: await this.domainExists(result.user.attributes.domain),
    };
  }

  /** Asked of the API's thread (which holds the wac-core client) once per domain and file. */
  private async domainExists(name: string): Promise<boolean> {
    let known = this.domainKnown.get(name);
    if (known === undefined) {
      known = await new Promise<boolean>((resolve) => {
        this.asked.set(name, resolve);
        this.post({ type: 'domain', name });
      });
      // A file of a million domains would outgrow the thread's heap: the answers are kept for
      // the domains of a customer, not for every name a file can hold.
      if (this.domainKnown.size >= DOMAINS_KEPT) this.domainKnown.clear();
      this.domainKnown.set(name, known);
    }
    return known;
  }

  private addJob(jobs: ChunkBuilder, user: UserInput, row: number, cells: RowCells): void {
    const { importId, requestId } = this.input;
    const { spec, secrets } = splitSecrets(user);
    // The cells without the passwords, not the user made from them: the worker makes it again.
    const data: UserCreateData = {
      v: 1,
      requestId,
      import: { id: importId, row, cells: publicCells(cells) },
    };
    if (secrets.password !== undefined || secrets.sipPassword !== undefined) {
      data.secrets = this.secrets.seal(secrets);
    }
    jobs.add(`imp-${importId}-r${row}`, data, orderKeyOfUser(spec.username), row);
  }
}

const encoder = new TextEncoder();

/** A chunk of 500 rows of a dozen short cells takes about 200 KB. */
const MIN_BUFFER_BYTES = 256 * 1024;

/** A chunk's jobs as they are read (see `PackedJobs`). */
class ChunkBuilder {
  private lines = '';
  private count = 0;
  private lastRow = 0;

  add(jobId: string, data: UserCreateData, orderKey: string, row: number): void {
    this.lines += `${orderKey}\n${jobId}\n${JSON.stringify(data)}\n`;
    this.count++;
    this.lastRow = row;
  }

  /** The chunk, its lines in a buffer of `spare` large enough, or a new one. */
  built(spare: Uint8Array[]): ChunkJobs | undefined {
    if (this.count === 0) return undefined;
    const { count, lastRow } = this;
    const size = Buffer.byteLength(this.lines);
    const fits = spare.findIndex((buffer) => buffer.byteLength >= size);
    const buffer =
      fits >= 0 ? spare.splice(fits, 1)[0] : new Uint8Array(Math.max(size, MIN_BUFFER_BYTES));
    const { written } = encoder.encodeInto(this.lines, buffer);
    return { lines: buffer.subarray(0, written), count, lastRow };
  }
}

async function checkSyntax(path: string, charset?: string): Promise<void> {
  const file = await readCsv(createReadStream(path), charset);
  readHeader(file.header);
  for await (const _record of file.records) {
    // Reading is the check.
  }
}

if (parentPort && (workerData as { reader?: ReaderInput } | undefined)?.reader) {
  const port = parentPort;
  const input = (workerData as { reader: ReaderInput }).reader;
  // Once it has said all it has to say the thread ends on its own (the API's ends it too).
  new Reader(input, port).run().then(
    () => port.unref(),
    (err: unknown) => {
      // A file refused (its header, or not CSV) is the client's mistake, answered as such; any
      // other error ends the thread and is answered 500 by the API's error boundary.
      if (!(err instanceof ApiError)) throw err;
      const { status, code, message, details } = err;
      port.postMessage({ type: 'refused', status, code, message, details } as ReaderMessage);
      port.unref();
    },
  );
}
