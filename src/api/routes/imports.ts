import { createHash, createHmac, randomUUID, type Hmac } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import Router from '@koa/router';
import { stringify } from 'csv-stringify';
import Joi from 'joi';
import { koaBody } from 'koa-body';

import { ApiError, errors } from '../../errors.js';
import { SECRET_COLUMNS, type Column } from '../../imports/columns.js';
import { isKnownCharset } from '../../imports/parse.js';
import { ingest } from '../../imports/ingest.js';
import { Slots } from '../../limit.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type { ImportCancelData } from '../../jobs/types.js';
import { bodyCoding, decoders, isDecodingError, notDecodable } from '../content-coding.js';
import type { ApiDeps } from '../deps.js';
import type { ApiContext, ApiState } from '../middleware.js';
import { validate } from '../validate.js';

export const importQuery = Joi.object({ dry_run: Joi.boolean().default(false) });

export const importIdPath = Joi.object({
  id: Joi.string()
    .pattern(/^[A-Za-z0-9_-]{1,64}$/)
    .required()
    .messages({ 'string.pattern.base': '{{#label}} is not an import id' }),
});

const CSV_TYPES = ['text/csv', 'application/csv', 'text/plain'];

/** What a multipart body carries beside its file: boundaries, the part's headers. */
const MULTIPART_SLACK = 64 * 1024;

/**
 * Files read at once by one API process; more wait their turn (their uploads already on disk).
 * Each takes a reader thread with a heap of up to 56 MB, and the writes to Redis of its rows.
 */
const IMPORTS_AT_ONCE = 2;

/**
 * Bulk imports. The upload is written to a temporary file (never held in memory), read once to
 * check it is CSV with a known header, then again to validate and queue its rows; the
 * temporary file is removed when the request ends.
 */
export function importRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const maxBytes = deps.config.importMaxBytes;
  const reading = new Slots(IMPORTS_AT_ONCE);
  const multipart = koaBody({
    multipart: true,
    json: false,
    urlencoded: false,
    text: false,
    formidable: { maxFileSize: maxBytes, maxFiles: 1, allowEmptyFiles: true, minFileSize: 0 },
    onError: (err) => {
      if (/maxFileSize|exceeded/i.test(err.message)) throw tooLarge(maxBytes);
      throw errors.validation(`the multipart body could not be read: ${err.message}`);
    },
  });

  router.post('/imports', async (ctx) => {
    const query = validate<{ dry_run: boolean }>(importQuery, ctx.query, 'the query');
    const key = ctx.get('Idempotency-Key');
    const id = key ? idOfKey(key) : randomUUID();

    const earlier = key ? await deps.imports.get(id) : undefined;
    const fingerprint = requestFingerprint(deps.config.secretKey, query.dry_run);
    const upload = await receive(ctx, multipart, maxBytes, fingerprint);
    try {
      if (earlier) {
        // The same key with another file, or a dry run's key on the real import, is refused:
        // answering the earlier import would tell the operator a file was imported that was not.
        const before = await deps.imports.fingerprintOf(id);
        // An import from before fingerprints were kept can only be told apart by its dry run.
        const same = before ? before === upload.fingerprint : earlier.dry_run === query.dry_run;
        if (!same) {
          throw errors.conflict('this Idempotency-Key was already used with a different request');
        }
        if (earlier.state !== 'validating') {
          ctx.set('Idempotent-Replayed', 'true');
          return answerAccepted(ctx, earlier);
        }
      }
      await reading.run(() =>
        ingest(
          {
            store: deps.imports,
            gateway: deps.gateway,
            domains: deps.domains,
            secretKey: deps.config.secretKey,
          },
          upload.path,
          {
            ...{ id, dryRun: query.dry_run, filename: upload.filename, charset: upload.charset },
            ...{ fingerprint: upload.fingerprint, requestId: ctx.state.requestId },
          },
        ),
      );
    } finally {
      await upload.remove();
    }
    answerAccepted(ctx, (await deps.imports.get(id))!);
  });

  router.get('/imports', async (ctx) => {
    ctx.body = { imports: await deps.imports.list() };
  });

  router.get('/imports/:id', async (ctx) => {
    ctx.body = { import: await existingImport(deps, ctx.params) };
  });

  router.get('/imports/:id/errors.csv', async (ctx) => {
    const found = await existingImport(deps, ctx.params);
    // The file's own columns, in its order, less the passwords, and its own delimiter: fixed, it
    // can be sent again.
    const layout = await deps.imports.layoutOf(found.id);
    const columns = layout.columns
      .map((key, i) => ({ key, header: layout.headers[i] ?? key }))
      .filter(({ key }) => !SECRET_COLUMNS.has(key as Column));
    const report = stringify({
      header: true,
      columns: [{ key: 'row' }, ...columns, { key: 'reason' }],
      delimiter: layout.delimiter,
      record_delimiter: layout.crlf ? 'windows' : 'unix',
      bom: true,
    });
    (async () => {
      for await (const error of deps.imports.errorRows(found.id)) {
        const row: Record<string, unknown> = {
          ...error.cells,
          row: error.row,
          reason: error.reason,
        };
        if (!report.write(row)) await new Promise((resolve) => report.once('drain', resolve));
      }
      report.end();
    })().catch((err) => report.destroy(err));

    ctx.type = 'text/csv; charset=utf-8';
    ctx.attachment(`import-${found.id}-errors.csv`);
    ctx.body = report;
  });

  // Cancelled at once; a job then clears the queue of the rows not started (workers that reach
  // one meanwhile drop it). Sent again, it answers the same; the clearing is queued once.
  router.delete('/imports/:id', async (ctx) => {
    const { id } = await existingImport(deps, ctx.params);
    const outcome = await deps.imports.cancel(id);
    if (outcome === 'finished') throw errors.importFinished(id);
    // Expired between the two reads: gone, as if it had been a moment earlier.
    if (outcome === 'missing') throw errors.notFound(`import ${id}`);

    const data: ImportCancelData = { v: 1, importId: id, requestId: ctx.state.requestId };
    const job = await deps.gateway.submit(JOB_TYPES.importCancel, data, {
      jobId: `imp-${id}-cancel`,
      orderKey: `import:${id}`,
    });
    ctx.set('Kitter-Job', job.id!);
    ctx.body = { import: (await deps.imports.get(id))! };
  });

  return router;
}

function answerAccepted(ctx: ApiContext, view: unknown & { id: string }): void {
  ctx.status = 202;
  ctx.set('Location', `/imports/${view.id}`);
  ctx.body = { import: view };
}

async function existingImport(deps: ApiDeps, params: unknown) {
  const { id } = validate<{ id: string }>(importIdPath, params, 'the path');
  const found = await deps.imports.get(id);
  if (!found) throw errors.notFound(`import ${id}`);
  return found;
}

/** The same Idempotency-Key names the same import: sent again, a cut-off upload goes on. */
function idOfKey(key: string): string {
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw errors.validation('Idempotency-Key must be 1–255 visible ASCII characters');
  }
  return `k${createHash('sha256').update(key).digest('hex').slice(0, 31)}`;
}

interface Upload {
  path: string;
  filename?: string;
  /** The character set the upload names, if any. */
  charset?: string;
  /** What `Idempotency-Key` compares: an HMAC of the file and whether it is a dry run. */
  fingerprint: string;
  remove(): Promise<void>;
}

/**
 * An HMAC, not a plain hash: a file's passwords are not kept in a form that a guess could be
 * checked against.
 */
function requestFingerprint(secretKey: string, dryRun: boolean): Hmac {
  // A key of its own, derived from KITTER_SECRET_KEY, used for nothing else.
  const key = createHmac('sha256', secretKey).update('kitter import fingerprint').digest();
  return createHmac('sha256', key).update(dryRun ? 'dry run\n' : 'import\n');
}

/** The uploaded file on disk: a CSV body as it streams in, or the multipart field `file`. */
async function receive(
  ctx: ApiContext,
  multipart: ReturnType<typeof koaBody>,
  maxBytes: number,
  fingerprint: Hmac,
): Promise<Upload> {
  // Refused before a byte is read: a body without a byte, and one that says it is too large.
  const declared = ctx.request.length;
  if (!declared && ctx.get('Transfer-Encoding') === '') {
    throw errors.validation('the file is empty: it needs a header line');
  }
  if (declared > maxBytes + (ctx.is('multipart/form-data') ? MULTIPART_SLACK : 0)) {
    // Its body is not read: the connection ends with the answer instead of taking it all in.
    ctx.set('Connection', 'close');
    throw tooLarge(maxBytes);
  }

  const coding = bodyCoding(ctx.get('Content-Encoding'));
  if (ctx.is('multipart/form-data')) {
    if (coding !== 'identity') {
      throw errors.unreadableBody(
        'a multipart upload cannot be compressed as a whole: send the file as text/csv instead',
      );
    }
    await multipart(ctx as never, async () => undefined);
    const file = ctx.request.files?.file;
    if (!file || Array.isArray(file)) {
      throw errors.validation('the multipart body needs exactly one field "file" with the CSV');
    }
    const remove = () => rm(file.filepath, { force: true });
    let charset: string | undefined;
    try {
      // The part's own media type may name the file's character set.
      charset = charsetOf(file.mimetype ?? '');
      for await (const chunk of createReadStream(file.filepath)) fingerprint.update(chunk);
    } catch (err) {
      await remove();
      throw err;
    }
    return {
      path: file.filepath,
      filename: file.originalFilename ?? undefined,
      charset,
      fingerprint: digest(fingerprint, charset),
      remove,
    };
  }

  if (!ctx.is(...CSV_TYPES)) {
    throw errors.unsupportedMediaType('text/csv, or multipart/form-data with a field "file"');
  }
  const charset = charsetOf(ctx.get('Content-Type'));

  const filename = /filename="?([^";]+)"?/i.exec(ctx.get('Content-Disposition'))?.[1];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kitter-import-'));
  const file = path.join(dir, 'upload.csv');
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    // A compressed file is kept as it reads: the limit and the fingerprint count what it holds.
    await pipeline([
      ctx.req as Readable,
      ...decoders(coding),
      measure(maxBytes, fingerprint),
      createWriteStream(file),
    ]);
  } catch (err) {
    await remove();
    if (isDecodingError(err)) throw notDecodable(coding);
    throw err instanceof ApiError ? err : errors.validation('the upload was cut off');
  }
  return {
    path: file,
    filename: filename ? path.basename(filename) : undefined,
    charset,
    fingerprint: digest(fingerprint, charset),
    remove,
  };
}

/** The upload's fingerprint: its bytes, and the charset they are read in, when one is named. */
function digest(fingerprint: Hmac, charset: string | undefined): string {
  if (charset) fingerprint.update(`\0charset=${charset.toLowerCase()}`);
  return fingerprint.digest('hex');
}

/**
 * The character set a file's media type names (`text/csv; charset=windows-1252`), when it is
 * not UTF-8: the file is read in it (see `asUtf8`). One kitter cannot read is a 415.
 */
function charsetOf(contentType: string): string | undefined {
  const charset = /;\s*charset="?([^";\s]+)"?/i.exec(contentType)?.[1];
  if (!charset) return undefined;
  if (!isKnownCharset(charset)) {
    throw errors.unreadableBody(
      `charset "${charset}" is not one kitter reads: save the file as UTF-8, or name another`,
    );
  }
  return charset;
}

/** Passes the upload through, fingerprinting it, and stops it past the limit. */
function measure(maxBytes: number, fingerprint: Hmac): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > maxBytes) return done(tooLarge(maxBytes));
      fingerprint.update(chunk);
      done(null, chunk);
    },
  });
}

function tooLarge(maxBytes: number): ApiError {
  const mb = maxBytes / 1024 / 1024;
  return errors.payloadTooLarge(
    mb >= 1 ? `${Math.round(mb)} MB` : `${Math.round(maxBytes / 1024)} KiB`,
  );
}
