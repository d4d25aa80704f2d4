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
  /** Whether the header line ends in CRLF (as Windows writes it), else LF or CR. */
  crlf: boolean;
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
  const crlf = /^[^\r\n]*\r\n/.test(head.toString('utf8'));

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

  return { header: first, delimiter, crlf, records: records(iterator, headerRow) };
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
 * order mark (Excel's "Unicode text"); a byte order mark wins over a charset named. Any other
 * file must be UTF-8, and one that is not is refused, naming the line, rather than read with
 * its accents turned into U+FFFD: a Spanish Excel saves "CSV (delimitado por comas)" in
 * Windows-1252, not UTF-8. Bytes that are not text in the charset named are refused too. Each
 * chunk is checked as it passes, holding back at most the bytes of one character, whatever the
 * file's line ends (CR alone, as old Mac exports have them, included).
 */
export function asUtf8(charset?: string): Transform {
  const named = charset && !isUtf8Charset(charset) ? charset : undefined;
  const lines = new LineCounter();
  /** The decoder of a file not in UTF-8, known from its first bytes; none for UTF-8. */
  let decoder: TextDecoder | undefined;
  let label = 'UTF-8';
  let started = false;
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** The bytes of a character the chunks so far began and did not end. */
  let pending = Buffer.alloc(0);

  const refuse = (where: string) =>
    errors.validation(
      `the file is not ${label} text (${where}): save it as "CSV UTF-8", or name its ` +
        'character set in the upload (Content-Type: text/csv; charset=windows-1252)',
    );

  /** UTF-8 passes as it is, checked. */
  const checked = (chunk: Buffer): Buffer => {
    try {
      utf8.decode(chunk, { stream: true });
    } catch {
      const joined = Buffer.concat([pending, chunk]);
      throw refuse(`line ${lines.count + linesBeforeBadUtf8(joined, lines.afterCr)}`);
    }
    // A character is 4 bytes at most: a chunk that long holds its own unfinished end.
    const end = chunk.length >= 4 ? chunk : Buffer.concat([pending, chunk]);
    pending = Buffer.from(end.subarray(end.length - unfinished(end)));
    lines.add(chunk);
    return chunk;
  };

  /** Another charset is decoded to UTF-8. */
  const decoded = (chunk: Buffer | undefined): Buffer => {
    let text: string;
    try {
      text = chunk ? decoder!.decode(chunk, { stream: true }) : decoder!.decode();
    } catch {
      throw refuse(`after line ${lines.count}`);
    }
    const bytes = Buffer.from(text);
    lines.add(bytes);
    return bytes;
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        if (!started) {
          started = true;
          const mark = byteOrderMark(chunk);
          const other = mark === 'utf-8' ? undefined : (mark ?? named);
          if (other) {
            decoder = new TextDecoder(other, { fatal: true });
            label = other;
          }
        }
        done(null, decoder ? decoded(chunk) : checked(chunk));
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done) {
      try {
        if (decoder) return done(null, decoded(undefined));
        if (pending.length > 0) throw refuse(`line ${lines.count}`);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
}

/** The charset a file's byte order mark says, if it has one. */
function byteOrderMark(head: Buffer): string | undefined {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 'utf-8';
  if (head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  if (head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  return undefined;
}

function isUtf8Charset(charset: string): boolean {
  try {
    return new TextDecoder(charset).encoding === 'utf-8';
  } catch {
    return false;
  }
}

/** Counts the lines of a text as it passes: LF, CRLF and CR alone each end one. */
class LineCounter {
  /** The number of the line under way. */
  count = 1;
  /** Whether the bytes so far end in CR (an LF next is the same line end). */
  afterCr = false;

  add(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.count += lineEnds(bytes, this.afterCr);
    this.afterCr = bytes[bytes.length - 1] === 0x0d;
  }
}

/** The line ends in `bytes`; an LF first, after a CR just before, is not one. */
function lineEnds(bytes: Buffer, afterCr: boolean): number {
  let ends = 0;
  for (let at = bytes.indexOf(0x0a); at !== -1; at = bytes.indexOf(0x0a, at + 1)) ends++;
  for (let at = bytes.indexOf(0x0d); at !== -1; at = bytes.indexOf(0x0d, at + 1)) {
    if (bytes[at + 1] !== 0x0a) ends++;
  }
  return afterCr && bytes[0] === 0x0a ? ends - 1 : ends;
}

/**
 * The line ends in `bytes` before the first of its lines that is not UTF-8. Its last line may
 * stop inside a character that the next bytes end: that is not held against it.
 */
function linesBeforeBadUtf8(bytes: Buffer, afterCr: boolean): number {
  let from = 0;
  let ends = 0;
  for (;;) {
    let end = from;
    while (end < bytes.length && bytes[end] !== 0x0a && bytes[end] !== 0x0d) end++;
    const last = end === bytes.length;
    const line = bytes.subarray(from, last ? end - unfinished(bytes) : end);
    if (!isUtf8(line) || last) return ends;
    // CRLF ends one line; so does an LF right after a CR that ended the bytes before.
    const crlf = bytes[end] === 0x0d && bytes[end + 1] === 0x0a;
    if (!(end === 0 && afterCr && bytes[0] === 0x0a)) ends++;
    from = end + (crlf ? 2 : 1);
  }
}

/** How many bytes at the end of `bytes` begin a UTF-8 character they do not end (0 to 3). */
function unfinished(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: its lead is further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? back : 0;
  }
  return 0;
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
