import type { Readable } from 'node:stream';

import type { DomainLookup } from '../api/domain-lookup.js';
import type { JobGateway } from '../jobs/gateway.js';
import { JOB_TYPES } from '../jobs/queues.js';
import type { SecretBox } from '../jobs/secrets.js';
import type { UserCreateData } from '../jobs/types.js';
import { orderKeyOfUser, splitSecrets, type UserInput } from '../model/users.js';
import { cellsOf, publicCells, readHeader, userOfRow, type RowCells } from './columns.js';
import { readCsv } from './parse.js';
import type { ImportStore } from './store.js';

export interface IngestDeps {
  store: ImportStore;
  gateway: JobGateway;
  domains: DomainLookup;
  secrets: SecretBox;
}

/** Rows sent to the queue in one round trip. */
const CHUNK = 500;

/** Round trips to Redis under way at once while a file is read. */
const WRITES_IN_FLIGHT = 4;

/** Import rows wait behind single requests: a large import never holds up `POST /users`. */
export const IMPORT_PRIORITY = 10;

export interface IngestOptions {
  id: string;
  dryRun: boolean;
  filename?: string;
  requestId?: string;
}

/**
 * Reads an uploaded file and turns its valid rows into `user.create` jobs, a chunk at a time.
 * The header is checked before anything is written: a file with an unknown column, or without
 * `username` or `domain`, is refused whole. Each row's job id comes from the import and the row
 * number, so the same file sent again under the same import queues no row twice.
 */
export async function ingest(
  deps: IngestDeps,
  open: () => Readable,
  options: IngestOptions,
): Promise<void> {
  // A first quick pass over the whole file: a header it refuses or a line that is not CSV (an
  // unclosed quote) refuses the file before any row is queued.
  await checkSyntax(open());

  const file = await readCsv(open());
  const layout = readHeader(file.header);
  const { id } = options;

  await deps.store.create(id, {
    dryRun: options.dryRun,
    filename: options.filename,
    columns: layout.map(([column]) => column),
  });

  const width = Math.max(...layout.map(([, index]) => index)) + 1;
  const seen = new Map<string, number>();
  const domainKnown = new Map<string, boolean>();
  const counts = { total: 0, valid: 0, invalid: 0 };
  let chunk: Array<{ data: UserCreateData; jobId: string; orderKey: string }> = [];

  // Writes to Redis go out while the next rows are read and checked, a few at a time. They keep
  // their order on the one connection: each chunk's last-row mark lands before its rows.
  const writes = new InFlight(WRITES_IN_FLIGHT);
  let cancelled = false;

  const flush = async () => {
    if (chunk.length === 0) return;
    const rows = chunk;
    chunk = [];
    const marked = deps.store.queuedUpTo(id, rows[rows.length - 1].data.import!.row);
    const sent = deps.gateway.submitBulk(JOB_TYPES.userCreate, rows, {
      priority: IMPORT_PRIORITY,
    });
    const checked = deps.store.isCancelled(id).then((yes) => (cancelled ||= yes));
    await writes.add(Promise.all([marked, sent, checked]));
  };

  for await (const record of file.records) {
    counts.total++;
    const cells = cellsOf(layout, record.cells);
    const result = await checkRow(deps, cells, record.cells.slice(width), seen, domainKnown);

    if ('reason' in result) {
      counts.invalid++;
      const error = { row: record.row, cells: publicCells(cells), reason: result.reason };
      await writes.add(deps.store.rejectRow(id, error));
      continue;
    }

    counts.valid++;
    seen.set(result.user.username, record.row);
    if (options.dryRun) continue;

    chunk.push(rowJob(deps, options, result.user, record.row, publicCells(cells)));
    if (chunk.length >= CHUNK) await flush();
    if (cancelled) break;
  }

  if (!cancelled) await flush();
  await writes.drain();
  if (cancelled) return;
  await deps.store.uploaded(id, counts);
}

async function checkSyntax(input: Readable): Promise<void> {
  const file = await readCsv(input);
  readHeader(file.header);
  for await (const _record of file.records) {
    // Reading is the check.
  }
}

/** A row's user, or why it is refused: the rules of `POST /users`, once per file. */
async function checkRow(
  deps: IngestDeps,
  cells: RowCells,
  extra: string[],
  seen: Map<string, number>,
  domainKnown: Map<string, boolean>,
): Promise<{ user: UserInput } | { reason: string }> {
  const result = userOfRow(cells, extra);
  if ('reason' in result) return result;

  const { username, attributes } = result.user;
  const first = seen.get(username);
  if (first !== undefined) return { reason: `username "${username}" is on row ${first} already` };

  let known = domainKnown.get(attributes.domain);
  if (known === undefined) {
    known = (await deps.domains.byName(attributes.domain)) !== undefined;
    domainKnown.set(attributes.domain, known);
  }
  if (!known) return { reason: `domain "${attributes.domain}" does not exist` };
  return result;
}

function rowJob(
  deps: IngestDeps,
  options: IngestOptions,
  user: UserInput,
  row: number,
  cells: Record<string, string>,
) {
  const { spec, secrets } = splitSecrets(user);
  const data: UserCreateData = {
    v: 1,
    user: spec,
    requestId: options.requestId,
    import: { id: options.id, row, cells },
  };
  if (secrets.password !== undefined || secrets.sipPassword !== undefined) {
    data.secrets = deps.secrets.seal(secrets);
  }
  return { data, jobId: `imp-${options.id}-r${row}`, orderKey: orderKeyOfUser(spec.username) };
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
}
