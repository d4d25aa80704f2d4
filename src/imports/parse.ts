import { isUtf8 } from 'node:buffer';
import { Readable, Transform } from 'node:stream';

import { parse } from 'csv-parse';

import { ApiError, errors } from '../errors.js';

const DELIMITERS = [',', ';', '\t'] as const;
export type Delimiter = (typeof DELIMITERS)[number];

/** The header must end within this many bytes; longer is not a header people write. */
const HEADER_LIMIT = 64 * 1024;

/**
 * Nor is a row longer than this. It also keeps one broken quote, or one huge cell, from
 * growing a single record past what the reader thread may hold (see `ingest.ts`).
 */
const RECORD_LIMIT = 64 * 1024;

/** A parsed line of the file: its row number as a spreadsheet shows it (the header is 1). */
export interface CsvRecord {
  row: number;
  cells: string[];
}

export interface CsvFile {
  header: string[];
  delimiter: Delimiter;
  records: AsyncIterable<CsvRecord>;
}

/**
 * Reads a CSV file as people export it from spreadsheets, as a stream: a UTF-8 byte order mark,
 * `,` `;` or tab as delimiter (found in the header line), CRLF or LF, quoted fields holding
 * delimiters, quotes or line breaks, blank lines. Never holds more than a chunk of the file.
 * Its text is UTF-8, or UTF-16 with its byte order mark, or in `charset` when one is given
 * (see `asUtf8`).
 */
export async function readCsv(input: Readable, charset?: string): Promise<CsvFile> {
  const text = input.pipe(asUtf8(charset));
  input.on('error', (err) => text.destroy(err));
  const { head, rest } = await readHeaderBytes(text);
  const delimiter = detectDelimiter(head);

  const parser = parse({
    bom: true,
    delimiter,
    relax_column_count: true,
    // Blank lines come through as records of one empty cell and are skipped below, so that
    // row numbers stay those a spreadsheet shows.
    skip_empty_lines: false,
    relax_quotes: false,
    max_record_size: RECORD_LIMIT,
  });
  const source = Readable.from(joinStreams(head, rest));
  source.on('error', (err) => parser.destroy(err));
  source.pipe(parser);

  const iterator = parser[Symbol.asyncIterator]() as AsyncIterator<string[]>;
  let headerRow = 0;
  let first: string[] | undefined;
  do {
    first = await next(iterator);
    headerRow++;
  } while (first && isBlank(first));
  if (!first) throw errors.validation('the file is empty: it needs a header line');

  return { header: first, delimiter, records: records(iterator, headerRow) };
}

function isBlank(cells: string[]): boolean {
  return cells.every((cell) => cell.trim() === '');
}

async function* records(iterator: AsyncIterator<string[]>, headerRow: number) {
  let row = headerRow;
  for (;;) {
    const cells = await next(iterator);
    if (!cells) return;
    row++;
    // A line of delimiters only (";;;") is as blank as an empty one.
    if (isBlank(cells)) continue;
    yield { row, cells } as CsvRecord;
  }
}

async function next(iterator: AsyncIterator<string[]>): Promise<string[] | undefined> {
  try {
    const { value, done } = await iterator.next();
    return done ? undefined : value;
  } catch (err) {
    if (err instanceof ApiError) throw err;
    const { code, message } = err as Error & { code?: string };
    if (code === 'CSV_MAX_RECORD_SIZE') {
      const line = /at line (\d+)/.exec(message)?.[1];
      throw errors.validation(
        `a row is longer than ${RECORD_LIMIT / 1024} KiB${line ? ` (line ${line})` : ''}: ` +
          'a cell too long, or a quote left open',
      );
    }
    throw errors.validation(`the file is not valid CSV: ${message.slice(0, 200)}`);
  }
}

/** Reads until the end of the first line (or of the file), and hands back the rest. */
async function readHeaderBytes(input: Readable) {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;

  for (;;) {
    const { value, done } = await iterator.next();
    if (done) break;
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value);
    chunks.push(chunk);
    size += chunk.length;
    if (chunk.includes(0x0a) || size > HEADER_LIMIT) break;
  }
  return { head: Buffer.concat(chunks), rest: iterator };
}

async function* joinStreams(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield head;
  for (;;) {
    const { value, done } = await rest.next();
    if (done) return;
    yield value;
  }
}

export function isDelimiter(value: unknown): value is Delimiter {
  return DELIMITERS.includes(value as Delimiter);
}

/**
 * The file's bytes as UTF-8, checked: a file in another character set is read in it when the
 * upload names it (`text/csv; charset=windows-1252`), or when it starts with UTF-16's byte
 * order mark (Excel's "Unicode text"). Any other file must be UTF-8, and one that is not is
 * refused, naming the line, rather than read with its accents turned into U+FFFD: a Spanish
 * Excel saves "CSV (delimitado por comas)" in Windows-1252, not UTF-8.
 */
export function asUtf8(charset?: string): Transform {
  const declared = charset && !/^utf-?8$/i.test(charset) ? charset : undefined;
  let decoder: TextDecoder | undefined;
  let started = false;
  /** The end of the last line not yet checked (a character may straddle two chunks). */
  let carry = Buffer.alloc(0);
  let line = 1;

  const check = (bytes: Buffer) => {
    if (isUtf8(bytes)) {
      for (let at = bytes.indexOf(0x0a); at !== -1; at = bytes.indexOf(0x0a, at + 1)) line++;
      return;
    }
    for (let from = 0; ; line++) {
      const end = bytes.indexOf(0x0a, from);
      if (!isUtf8(bytes.subarray(from, end === -1 ? bytes.length : end))) break;
      from = end + 1;
    }
    throw errors.validation(
      `the file is not UTF-8 text (line ${line}): save it as "CSV UTF-8", or name its ` +
        'character set in the upload (Content-Type: text/csv; charset=windows-1252)',
    );
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        if (!started) {
          started = true;
          const utf16 =
            chunk[0] === 0xff && chunk[1] === 0xfe
              ? 'utf-16le'
              : chunk[0] === 0xfe && chunk[1] === 0xff
                ? 'utf-16be'
                : undefined;
          const label = declared ?? utf16;
          if (label) decoder = new TextDecoder(label);
        }
        if (decoder) return done(null, Buffer.from(decoder.decode(chunk, { stream: true })));

        const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
        const lastLine = bytes.lastIndexOf(0x0a);
        carry = Buffer.from(bytes.subarray(lastLine + 1));
        check(bytes.subarray(0, lastLine + 1));
        done(null, chunk);
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done) {
      try {
        if (decoder) return done(null, Buffer.from(decoder.decode()));
        check(carry);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
}

/** Whether the character set an upload names can be read (WHATWG labels: `latin1`, …). */
export function isKnownCharset(charset: string): boolean {
  try {
    new TextDecoder(charset);
    return true;
  } catch {
    return false;
  }
}

/** The delimiter the header line uses most, outside quotes; a comma when there is none. */
export function detectDelimiter(head: Buffer): Delimiter {
  const text = head.toString('utf8');
  const end = text.search(/\r?\n/);
  const line = end === -1 ? text : text.slice(0, end);

  const counts = new Map<Delimiter, number>(DELIMITERS.map((d) => [d, 0]));
  let quoted = false;
  for (const char of line) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && counts.has(char as Delimiter)) {
      counts.set(char as Delimiter, counts.get(char as Delimiter)! + 1);
    }
  }
  let best: Delimiter = ',';
  for (const [delimiter, count] of counts) if (count > counts.get(best)!) best = delimiter;
  return best;
}
