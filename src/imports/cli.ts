import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';

import type { ImportView } from './store.js';

export const IMPORT_USAGE =
  'usage: kitter import FILE [--url URL] [--token TOKEN] [--key KEY] [--charset NAME] ' +
  '[--dry-run] [--wait]';

const HELP = `${IMPORT_USAGE}

Uploads a CSV file of users to a running kitter (POST /imports) and prints the summary.
  --url URL      where kitter answers (KITTER_URL; default http://127.0.0.1:3000)
  --token TOKEN  an API token (KITTER_TOKEN)
  --key KEY      an Idempotency-Key: the same file sent again under it queues no row twice,
                 and an upload cut off goes on where it stopped (without it, an import gets
                 a key of its own, printed as it starts)
  --charset NAME the file's character set when it is not UTF-8 (windows-1252, as a Spanish
                 Excel saves plain CSV; UTF-16 with its byte order mark is found alone)
  --dry-run      check every row, queue nothing
  --wait         follow the import to its end, with a progress bar
Rows refused or failed are written to FILE.errors.csv. Exit status: 0 all rows fine, 1 some
row refused, failed or cancelled (not created), 2 the import could not be made.`;

const POLL_MS = 500;

/**
 * `kitter import FILE`: uploads a CSV file to a running kitter, follows the import with a
 * progress bar (with `--wait`), prints the summary, and writes `FILE.errors.csv` when rows were
 * refused or failed. Exit status: 0 when every row is fine, 1 when any row was refused, failed
 * or cancelled, 2 when the import could not be made at all.
 */
export async function runImport(argv: string[], env = process.env): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        key: { type: 'string' },
        charset: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        'dry-run': { type: 'boolean', default: false },
        wait: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    console.error(`kitter import: ${(err as Error).message}\n${IMPORT_USAGE}`);
    return 2;
  }

  if (args.values.help) {
    console.log(HELP);
    return 0;
  }
  const [file] = args.positionals;
  const url = (args.values.url ?? env.KITTER_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
  const token = args.values.token ?? env.KITTER_TOKEN ?? env.KITTER_API_TOKENS?.split(',')[0];
  if (!file || args.positionals.length > 1) {
    console.error(IMPORT_USAGE);
    return 2;
  }
  if (!token) {
    console.error('kitter import: no token: give --token, or set KITTER_TOKEN');
    return 2;
  }

  const dryRun = args.values['dry-run'];
  // A real import always goes under a key, one of its own unless given: an upload cut off (the
  // connection, a restart of kitter) is sent again under it and goes on where it stopped.
  const key = args.values.key ?? (dryRun ? undefined : randomUUID());
  try {
    const { wait, charset } = args.values;
    return await upload(file, url, token, { dryRun, wait, key, charset });
  } catch (err) {
    // fetch says only "fetch failed"; its cause says why (connection refused, no such host).
    const cause = (err as { cause?: { message?: string; code?: string } }).cause;
    console.error(`kitter import: ${(err as Error).message}${cause ? `: ${cause.message}` : ''}`);
    if (NOT_REACHED.has(cause?.code ?? '')) {
      console.error(`kitter import: nothing answered at ${url}: is kitter running there?`);
    } else if (key && err instanceof CutOff) {
      // The upload may have been cut off half-way: what was queued stays, under the key.
      console.error(
        `kitter import: run the same command again with --key ${key} added: the import goes ` +
          'on where it stopped, queuing no row twice',
      );
    }
    return 2;
  }
}

/** Errors that say the upload never reached kitter: nothing was sent, nothing to go on with. */
const NOT_REACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

/** The upload was under way and no answer took it: it may have been cut off half-way. */
class CutOff extends Error {}

/** Values sent in a header: printable ASCII, which a header can carry and a log may show. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

interface UploadOptions {
  dryRun: boolean;
  wait: boolean;
  key?: string;
  charset?: string;
}

async function upload(file: string, url: string, token: string, options: UploadOptions) {
  const { dryRun, wait, key, charset } = options;
  // Checked before anything is sent. Never printed: a header fetch refuses names its value.
  if (!HEADER_SAFE.test(token)) throw new Error('the token holds characters a header cannot');
  if (charset !== undefined && !HEADER_SAFE.test(charset)) throw new Error('--charset: no name');
  if (key !== undefined && !/^[\x20-\x7e]+$/.test(key)) throw new Error('--key: printable ASCII');
  if (!/^https?:$/.test(URL.canParse(url) ? new URL(url).protocol : '')) {
    throw new Error(`--url ${url} is not an http:// or https:// address`);
  }
  const found = await stat(file);
  if (!found.isFile()) throw new Error(`${file} is not a file`);
  const size = found.size;
  const headers = { authorization: `Bearer ${token}` };
  const query = dryRun ? '?dry_run=true' : '';

  console.error(
    `uploading ${path.basename(file)} (${formatBytes(size)}) to ${url}` +
      (key ? ` under the key ${key}` : ''),
  );
  const response = await fetch(`${url}/imports${query}`, {
    method: 'POST',
    headers: {
      ...headers,
      'content-type': charset ? `text/csv; charset=${charset}` : 'text/csv',
      'content-disposition': `attachment; filename="${path.basename(file).replace(/"/g, '')}"`,
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body: Readable.toWeb(createReadStream(file)) as ReadableStream,
    duplex: 'half',
  } as RequestInit).catch((err: Error) => {
    throw new CutOff(err.message, { cause: err.cause });
  });
  const body = (await response.json().catch(() => ({}))) as {
    import?: ImportView;
    error?: string;
  };
  if (response.status !== 202 || !body.import) {
    const reason = `(${response.status}): ${body.error ?? 'no reason'}`;
    // A 5xx (Redis away, kitter stopping) may pass; a 4xx is the file's or the request's.
    if (response.status >= 500) throw new CutOff(`the import did not complete ${reason}`);
    // A file not in UTF-8 is read in the character set the upload names.
    const hint = /not UTF-8/.test(body.error ?? '') ? ' (its charset: --charset windows-1252)' : '';
    throw new Error(`the import was refused ${reason}${hint}`);
  }

  let view = body.import;
  const replayed = response.headers.get('idempotent-replayed') === 'true';
  console.error(
    `import ${view.id}${replayed ? ' (sent before under this key)' : ''}: ` +
      `${view.valid} valid and ${view.invalid} invalid rows`,
  );
  if (wait) view = await follow(url, headers, view);
  else if (view.pending > 0) {
    console.error(`follow it: GET ${url}/imports/${view.id} (or run again with --wait)`);
  }

  printSummary(view);
  // Without --wait, rows still pending may fail later: the report then has the refused ones.
  const target = `${file}.errors.csv`;
  if (view.invalid + view.failed === 0) {
    // A report left by an earlier run would read as this one's.
    if (
      await rm(target).then(
        () => true,
        () => false,
      )
    ) {
      console.log(`removed ${target}, left by an earlier run: no row was refused this time`);
    }
  } else {
    const report = await fetch(`${url}/imports/${view.id}/errors.csv`, { headers });
    if (!report.ok || !report.body) throw new Error(`errors.csv: HTTP ${report.status}`);
    await pipeline(Readable.fromWeb(report.body as never), createWriteStream(target));
    console.log(`the refused and failed rows, with reasons: ${target}`);
  }
  if (view.cancelled > 0) {
    console.log(`${view.cancelled} rows were cancelled before they ran: those users were not made`);
  }
  return exitStatusOf(view);
}

/** 1 when a row of the file did not become a user (refused, failed or cancelled), else 0. */
export function exitStatusOf(view: Pick<ImportView, 'invalid' | 'failed' | 'cancelled'>) {
  return view.invalid + view.failed + view.cancelled > 0 ? 1 : 0;
}

/** Polls the import until no row is pending, drawing a progress bar on a terminal. */
async function follow(url: string, headers: Record<string, string>, first: ImportView) {
  let view = first;
  const tty = process.stderr.isTTY;
  let lastLine = 0;

  while (view.state === 'running' || view.state === 'validating') {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const answer = await fetch(`${url}/imports/${view.id}`, { headers });
    if (!answer.ok) throw new Error(`reading the import: HTTP ${answer.status}`);
    view = ((await answer.json()) as { import: ImportView }).import;

    const line = progressLine(view);
    if (tty) process.stderr.write(`\r${line}`);
    else if (Date.now() - lastLine > 5_000) {
      process.stderr.write(`${line}\n`);
      lastLine = Date.now();
    }
  }
  if (tty) process.stderr.write('\n');
  return view;
}

export function progressLine(view: ImportView, width = 30): string {
  const done = view.succeeded + view.failed + view.cancelled;
  const share = view.valid > 0 ? done / view.valid : 1;
  const filled = Math.round(share * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  return `[${bar}] ${Math.floor(share * 100)}% ${done}/${view.valid} (${view.failed} failed)`;
}

function printSummary(view: ImportView): void {
  console.log(
    [
      `import ${view.id}: ${view.state}${view.dry_run ? ' (dry run: nothing was queued)' : ''}`,
      `  rows: ${view.total}, valid ${view.valid}, invalid ${view.invalid}`,
      `  succeeded ${view.succeeded}, failed ${view.failed}, cancelled ${view.cancelled}, ` +
        `pending ${view.pending}`,
    ].join('\n'),
  );
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
