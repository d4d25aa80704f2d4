import type { RedisClient } from '../redis.js';
import type { RowCells } from './columns.js';
import { isDelimiter, type Delimiter } from './parse.js';

export type ImportState = 'validating' | 'running' | 'finished' | 'cancelled';
export type RowOutcome = 'succeeded' | 'failed' | 'cancelled';

/** An import as the API shows it. */
export interface ImportView {
  id: string;
  state: ImportState;
  dry_run: boolean;
  filename: string | null;
  total: number;
  valid: number;
  invalid: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  pending: number;
  created_at: string;
  finished_at: string | null;
  first_errors: RowError[];
}

export interface RowError {
  row: number;
  reason: string;
}

/** How the import's file was written: what its error report copies. */
export interface FileLayout {
  /** The columns, in the file's order. */
  columns: string[];
  /** Their names as the file wrote them (`Username`, ` EMAIL `, trimmed). */
  headers: string[];
  delimiter: Delimiter;
  crlf: boolean;
}

/** A row of the error report: the row's cells as in the file (no secrets), and why. */
export interface ErrorRow extends RowError {
  cells: RowCells;
}

const FIRST_ERRORS = 10;
const LISTED = 50;
/** How long an import is kept once it has ended: as long as failed jobs. */
const KEEP_S = 7 * 24 * 3600;

/** Lua: ends the import of KEYS (its four keys, see `parts`) as `state`, kept `ttl` seconds. */
const endAs = (state: string, now: string, ttl: string) => `
redis.call('HSET', KEYS[1], 'state', '${state}', 'finished_at', ${now})
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ${ttl}) end`;

/** Lua: finishes the running import of KEYS once its valid rows have all ended; 1 if it did. */
const finishWhenEnded = (now: string, ttl: string) => `
local h = redis.call('HMGET', KEYS[1], 'state', 'valid', 'succeeded', 'failed', 'cancelled')
if h[1] ~= 'running' then return 0 end
local ended = tonumber(h[3] or 0) + tonumber(h[4] or 0) + tonumber(h[5] or 0)
if ended < tonumber(h[2] or 0) then return 0 end
${endAs('finished', now, ttl)}
return 1`;

/**
 * Counts a row's outcome once however often it is reported (a job may run twice): the row
 * goes into the set of ended rows first, and only a row new to it is counted. When every valid
 * row of a running import has ended, the import is finished.
 */
const RECORD_OUTCOME = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
${finishWhenEnded('ARGV[3]', 'ARGV[4]')}
`;

/** Ends an import as cancelled unless it has ended already (or is gone); answers which. */
const CANCEL = `
if redis.call('HEXISTS', KEYS[1], 'created_at') == 0 then return 'missing' end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'finished' then return 'finished' end
if state == 'cancelled' then return 'already' end
${endAs('cancelled', 'ARGV[1]', 'ARGV[2]')}
return 'cancelled'
`;

/**
 * The upload has been read: records its totals, and takes a validating import on to running,
 * or to finished when nothing of it is to run; an import cancelled meanwhile stays cancelled.
 * Answers 1 when it is running.
 */
const UPLOADED = `
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'valid', ARGV[2], 'invalid', ARGV[3])
if redis.call('HGET', KEYS[1], 'state') ~= 'validating' then return 0 end
if redis.call('HGET', KEYS[1], 'dry_run') == '1' or tonumber(ARGV[2]) == 0 then
  ${endAs('finished', 'ARGV[4]', 'ARGV[5]')}
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'running')
return 1
`;

/** Finishes a running import whose valid rows have all ended; any other is left as it is. */
const FINISH_IF_DONE = finishWhenEnded('ARGV[1]', 'ARGV[2]');

/**
 * Records a new import and lists it, unless one of that id exists; kept as long as an ended
 * import even when it never ends (an upload cut off for good). All or nothing, so that it can
 * be tried again.
 */
const CREATE = `
if redis.call('HEXISTS', KEYS[1], 'created_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
`;

/**
 * Counts of the rows read so far, while the file is still being read: raised, never lowered (a
 * chunk written again after a later one), and left alone once the upload's totals are in.
 */
const READ_SO_FAR = `
if redis.call('HGET', KEYS[1], 'state') ~= 'validating' then return end
if tonumber(ARGV[1]) <= tonumber(redis.call('HGET', KEYS[1], 'total') or 0) then return end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'valid', ARGV[2], 'invalid', ARGV[3])
`;

/** Sets the last row queued, unless a later one is there already. */
const RAISE_LAST_ROW = `
local last = tonumber(redis.call('HGET', KEYS[1], 'last_row') or 0)
if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'last_row', ARGV[1]) end
`;

/**
 * For each username of ARGV[2] (see `packNames`) that an earlier row of the file has, its index
 * in the chunk (from 0) and that row; a username is registered at its row when its flag says so
 * (a row refused for another reason is checked, not registered). A row sent again (a round trip
 * tried again after a blip) finds itself, and is not its own duplicate; a later row is never
 * the "earlier" one.
 */
const CLAIM_NAMES = `
local key, names = KEYS[1], ARGV[2]
local earlier = {}
local pos, index = 1, 0
while pos <= #names do
  local nameEnd = string.find(names, '\\n', pos, true)
  local rowEnd = string.find(names, '\\n', nameEnd + 1, true)
  local name = string.sub(names, pos, nameEnd - 1)
  local row = tonumber(string.sub(names, nameEnd + 1, rowEnd - 1))
  local register = string.sub(names, rowEnd + 1, rowEnd + 1) == '1'
  pos = rowEnd + 3

  local first = tonumber(redis.call('HGET', key, name) or false)
  if first and first < row then
    earlier[#earlier + 1] = index
    earlier[#earlier + 1] = first
  elseif register and not first then
    redis.call('HSET', key, name, row)
  end
  index = index + 1
end
redis.call('EXPIRE', key, ARGV[1])
return earlier
`;

/**
 * How long a read's usernames outlive its last chunk, when the read could not delete them (the
 * API stopped, Redis away): far longer than any chunk takes, far shorter than an import is kept.
 */
const NAMES_KEEP_S = 3600;

/**
 * Imports in Redis: a hash of counts and state per import, the set of rows that ended, and
 * the rejected and failed rows (without secrets) for the error report. The file itself is not
 * kept: each valid row lives in its own job until it ends.
 */
export class ImportStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private key(id: string, part = ''): string {
    return `${this.prefix}:import:${id}${part}`;
  }

  /** Records a new import, once: false when one of that id exists (an upload sent again). */
  async create(
    id: string,
    options: { dryRun: boolean; filename?: string; fingerprint?: string; layout: FileLayout },
  ): Promise<boolean> {
    const fields = {
      id,
      state: 'validating',
      created_at: now(),
      dry_run: options.dryRun ? '1' : '0',
      filename: options.filename ?? '',
      fingerprint: options.fingerprint ?? '',
      columns: JSON.stringify(options.layout.columns),
      headers: JSON.stringify(options.layout.headers),
      delimiter: options.layout.delimiter,
      crlf: options.layout.crlf ? '1' : '0',
    };
    const created = await this.redis.eval(
      CREATE,
      2,
      this.key(id),
      `${this.prefix}:imports`,
      String(Date.now()),
      id,
      String(KEEP_S),
      ...Object.entries(fields).flat(),
    );
    return created === 1;
  }

  /**
   * The columns of the import's file, in its order, their names as it wrote them, its
   * delimiter and its line ends: the error report is written as the file was, so the
   * spreadsheet that made it opens the report the same way (a spreadsheet set to `;` shows a
   * comma-separated file as one column).
   */
  async layoutOf(id: string): Promise<FileLayout> {
    const [columns, headers, delimiter, crlf] = await this.redis.hmget(
      this.key(id),
      ...['columns', 'headers', 'delimiter', 'crlf'],
    );
    const names = JSON.parse(columns ?? '[]') as string[];
    // Imports from before these were kept had their report with the names lower-cased, commas
    // and LF.
    return {
      columns: names,
      headers: headers ? (JSON.parse(headers) as string[]) : names,
      delimiter: isDelimiter(delimiter) ? delimiter : ',',
      crlf: crlf === '1',
    };
  }

  /** What the import's request was, for `Idempotency-Key` (see the imports route). */
  async fingerprintOf(id: string): Promise<string | undefined> {
    return (await this.redis.hget(this.key(id), 'fingerprint')) || undefined;
  }

  /**
   * The rows read so far, valid and not: while a large file is read, `GET /imports/{id}` shows
   * them growing, not zeros beside rows that have already succeeded.
   */
  async readSoFar(id: string, counts: { total: number; valid: number; invalid: number }) {
    const { total, valid, invalid } = counts;
    await this.redis.eval(READ_SO_FAR, 1, this.key(id), total, valid, invalid);
  }

  /** The upload has been read: totals are known, and rows may already have ended. */
  async uploaded(id: string, counts: { total: number; valid: number; invalid: number }) {
    const parts = this.parts(id);
    const { total, valid, invalid } = counts;
    const running = await this.redis.eval(
      UPLOADED,
      parts.length,
      ...parts,
      ...[total, valid, invalid].map(String),
      now(),
      String(KEEP_S),
    );
    // Rows may all have ended while the file was still being read.
    if (running === 1) await this.redis.eval(FINISH_IF_DONE, parts.length, ...parts, now(), KEEP_S);
  }

  /** The import's keys: its hash, its ended rows, its error rows and their order. */
  private parts(id: string): string[] {
    return ['', ':ended', ':errors', ':error-rows'].map((part) => this.key(id, part));
  }

  /**
   * Which usernames of a chunk (`packNames`) the file had on an earlier row: a username repeated
   * in a file is an error on its later rows. Answers the index of each such name in the chunk
   * and the earlier row, in pairs (`earlierRowsOf` spreads them out). A name counts as an
   * earlier row for the rows after it only when registered (a row otherwise valid). Each read of
   * a file has its own set (`read`): two reads of one import at once (a client that sent it
   * again while the first request was still reading it) each check the whole file. Kept in
   * Redis while the file is read, not in the API's memory, which would grow with the file (a
   * million rows took 60 MB, more than the reader thread may hold, and ended the API).
   */
  async claimNames(id: string, read: string, names: string): Promise<number[]> {
    const key = this.namesKey(id, read);
    return (await this.redis.eval(CLAIM_NAMES, 1, key, NAMES_KEEP_S, names)) as number[];
  }

  /** The read has ended: its usernames are no longer needed. */
  async forgetNames(id: string, read: string): Promise<void> {
    await this.redis.del(this.namesKey(id, read));
  }

  private namesKey(id: string, read: string): string {
    return this.key(id, `:names:${read}`);
  }

  async rejectRow(id: string, error: ErrorRow): Promise<void> {
    await this.rejectRows(id, [error]);
  }

  /** Records rows refused (or failed) in one round trip. */
  async rejectRows(id: string, rows: ErrorRow[]): Promise<void> {
    if (rows.length === 0) return;
    const entries = rows.flatMap((error) => [String(error.row), JSON.stringify(error)]);
    const ranks = rows.flatMap((error) => [error.row, String(error.row)]);
    await this.redis
      .multi()
      .hset(this.key(id, ':errors'), ...entries)
      .zadd(this.key(id, ':error-rows'), ...ranks)
      .expire(this.key(id, ':errors'), KEEP_S)
      .expire(this.key(id, ':error-rows'), KEEP_S)
      .exec();
  }

  async recordOutcome(id: string, row: number, outcome: RowOutcome): Promise<void> {
    const parts = this.parts(id);
    await this.redis.eval(
      RECORD_OUTCOME,
      parts.length,
      ...parts,
      String(row),
      outcome,
      now(),
      String(KEEP_S),
    );
  }

  /** The last row sent to the queue so far: the rows a cancel has to look at end there. */
  async queuedUpTo(id: string, row: number): Promise<void> {
    // Only ever up: a chunk written again after a later one must not lower it.
    await this.redis.eval(RAISE_LAST_ROW, 1, this.key(id), String(row));
  }

  async lastRow(id: string): Promise<number> {
    return Number((await this.redis.hget(this.key(id), 'last_row')) ?? 1);
  }

  /**
   * Marks the import cancelled, at once and once: an upload still being read stops, and rows
   * not started are dropped as workers reach them. Answers `finished` when it had ended first
   * (nothing is left to cancel), `already` when it was cancelled before.
   */
  async cancel(id: string): Promise<'cancelled' | 'already' | 'finished' | 'missing'> {
    const parts = this.parts(id);
    const answer = await this.redis.eval(CANCEL, parts.length, ...parts, now(), String(KEEP_S));
    return answer as 'cancelled' | 'already' | 'finished' | 'missing';
  }

  async isCancelled(id: string): Promise<boolean> {
    return (await this.redis.hget(this.key(id), 'state')) === 'cancelled';
  }

  async get(id: string): Promise<ImportView | undefined> {
    const [fields, firstRows] = await Promise.all([
      this.redis.hgetall(this.key(id)),
      this.redis.zrange(this.key(id, ':error-rows'), 0, FIRST_ERRORS - 1),
    ]);
    if (!fields.created_at) return undefined;

    const firstErrors =
      firstRows.length > 0 ? await this.redis.hmget(this.key(id, ':errors'), ...firstRows) : [];
    return toView(fields, firstErrors);
  }

  async list(): Promise<ImportView[]> {
    await this.redis.zremrangebyscore(`${this.prefix}:imports`, 0, Date.now() - KEEP_S * 1000);
    const ids = await this.redis.zrevrange(`${this.prefix}:imports`, 0, LISTED - 1);
    const views = await Promise.all(ids.map((id) => this.get(id)));
    return views.filter((view): view is ImportView => view !== undefined);
  }

  /** Every rejected or failed row, in row order, a page at a time. */
  async *errorRows(id: string, page = 1000): AsyncGenerator<ErrorRow> {
    for (let start = 0; ; start += page) {
      const rows = await this.redis.zrange(this.key(id, ':error-rows'), start, start + page - 1);
      if (rows.length === 0) return;
      const found = await this.redis.hmget(this.key(id, ':errors'), ...rows);
      for (const text of found) if (text) yield JSON.parse(text) as ErrorRow;
    }
  }
}

function toView(fields: Record<string, string>, firstErrors: Array<string | null>): ImportView {
  const count = (name: string) => Number(fields[name] ?? 0);
  const valid = count('valid');
  const ended = count('succeeded') + count('failed') + count('cancelled');

  return {
    id: fields.id,
    state: fields.state as ImportState,
    dry_run: fields.dry_run === '1',
    filename: fields.filename || null,
    total: count('total'),
    valid,
    invalid: count('invalid'),
    succeeded: count('succeeded'),
    failed: count('failed'),
    cancelled: count('cancelled'),
    pending: fields.dry_run === '1' ? 0 : Math.max(0, valid - ended),
    created_at: fields.created_at,
    finished_at: fields.finished_at || null,
    first_errors: firstErrors
      .filter((text): text is string => text !== null)
      .map((text) => {
        const { row, reason } = JSON.parse(text) as ErrorRow;
        return { row, reason };
      }),
  };
}

function now(): string {
  return new Date().toISOString();
}
