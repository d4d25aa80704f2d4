import type { RedisClient } from '../redis.js';
import type { RowCells } from './columns.js';

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

/** A row of the error report: the row's cells as in the file (no secrets), and why. */
export interface ErrorRow extends RowError {
  cells: RowCells;
}

const FIRST_ERRORS = 10;
const LISTED = 50;
/** How long an import is kept once it has ended: as long as failed jobs. */
const KEEP_S = 7 * 24 * 3600;

/**
 * Counts a row's outcome once however often it is reported (a job may run twice): the row
 * goes into the set of ended rows first, and only a row new to it is counted. When every valid
 * row of a running import has ended, the import is finished.
 */
const RECORD_OUTCOME = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local h = redis.call('HMGET', KEYS[1], 'state', 'valid', 'succeeded', 'failed', 'cancelled')
if h[1] == 'running' then
  local ended = tonumber(h[3] or 0) + tonumber(h[4] or 0) + tonumber(h[5] or 0)
  if ended >= tonumber(h[2] or 0) then
    redis.call('HSET', KEYS[1], 'state', 'finished', 'finished_at', ARGV[3])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
  end
end
return 1
`;

/** Ends an import as cancelled unless it has ended already; answers which. */
const CANCEL = `
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'finished' then return 'finished' end
if state == 'cancelled' then return 'already' end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[2]) end
return 'cancelled'
`;

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

  async create(
    id: string,
    options: { dryRun: boolean; filename?: string; fingerprint?: string; columns: string[] },
  ): Promise<boolean> {
    const now = new Date().toISOString();
    const created = await this.redis.hsetnx(this.key(id), 'created_at', now);
    if (!created) return false;

    await this.redis
      .multi()
      .hset(this.key(id), {
        id,
        state: 'validating',
        dry_run: options.dryRun ? '1' : '0',
        filename: options.filename ?? '',
        fingerprint: options.fingerprint ?? '',
        columns: JSON.stringify(options.columns),
      })
      .zadd(`${this.prefix}:imports`, Date.now(), id)
      .exec();
    return true;
  }

  /** The columns of the import's file, in its order. */
  async columnsOf(id: string): Promise<string[]> {
    return JSON.parse((await this.redis.hget(this.key(id), 'columns')) ?? '[]') as string[];
  }

  /** What the import's request was, for `Idempotency-Key` (see the imports route). */
  async fingerprintOf(id: string): Promise<string | undefined> {
    return (await this.redis.hget(this.key(id), 'fingerprint')) || undefined;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.key(id))) === 1;
  }

  /** The upload has been read: totals are known, and rows may already have ended. */
  async uploaded(id: string, counts: { total: number; valid: number; invalid: number }) {
    const dryRun = (await this.redis.hget(this.key(id), 'dry_run')) === '1';
    await this.redis.hset(this.key(id), counts);
    if (dryRun || counts.valid === 0) {
      await this.end(id, 'finished');
      return;
    }
    await this.redis.hset(this.key(id), 'state', 'running');
    // Rows may all have ended while the file was still being read.
    await this.checkFinished(id);
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
      .exec();
  }

  async recordOutcome(id: string, row: number, outcome: RowOutcome): Promise<void> {
    await this.redis.eval(
      RECORD_OUTCOME,
      2,
      this.key(id),
      this.key(id, ':ended'),
      String(row),
      outcome,
      new Date().toISOString(),
      String(KEEP_S),
    );
  }

  /** The last row sent to the queue so far: the rows a cancel has to look at end there. */
  async queuedUpTo(id: string, row: number): Promise<void> {
    await this.redis.hset(this.key(id), 'last_row', String(row));
  }

  async lastRow(id: string): Promise<number> {
    return Number((await this.redis.hget(this.key(id), 'last_row')) ?? 1);
  }

  /**
   * Marks the import cancelled, at once and once: an upload still being read stops, and rows
   * not started are dropped as workers reach them. Answers `finished` when it had ended first
   * (nothing is left to cancel), `already` when it was cancelled before.
   */
  async cancel(id: string): Promise<'cancelled' | 'already' | 'finished'> {
    const parts = ['', ':ended', ':errors', ':error-rows'].map((part) => this.key(id, part));
    const answer = await this.redis.eval(
      CANCEL,
      parts.length,
      ...parts,
      new Date().toISOString(),
      String(KEEP_S),
    );
    return answer as 'cancelled' | 'already' | 'finished';
  }

  async isCancelled(id: string): Promise<boolean> {
    return (await this.redis.hget(this.key(id), 'state')) === 'cancelled';
  }

  async end(id: string, state: 'finished' | 'cancelled'): Promise<void> {
    const parts = ['', ':ended', ':errors', ':error-rows'].map((part) => this.key(id, part));
    const multi = this.redis
      .multi()
      .hset(this.key(id), 'state', state, 'finished_at', new Date().toISOString());
    for (const key of parts) multi.expire(key, KEEP_S);
    await multi.exec();
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

  private async checkFinished(id: string): Promise<void> {
    const view = await this.get(id);
    if (view && view.state === 'running' && view.pending === 0) await this.end(id, 'finished');
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
