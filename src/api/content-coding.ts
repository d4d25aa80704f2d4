import type { Transform } from 'node:stream';
import zlib from 'node:zlib';

import { errors, type ApiError } from '../errors.js';

/** The content codings a request body may come in: what zlib reads, and none. */
const DECODERS: Record<string, (() => Transform) | undefined> = {
  gzip: () => zlib.createGunzip(),
  // zlib-wrapped, as RFC 9110 has it, or gzip sent under this name: the JSON bodies' inflater
  // takes both, and so do imports.
  deflate: () => zlib.createUnzip(),
  br: () => zlib.createBrotliDecompress(),
};

/**
 * The request body's content coding (RFC 9110 §8.4), checked before a byte is read: none,
 * `identity`, `gzip`, `deflate` or `br`; anything else (`zstd`, or several codings in a row) is
 * answered 415 naming it, rather than read as if it were plain and refused for what it is not.
 */
export function bodyCoding(header: string): string {
  const coding = header.trim().toLowerCase();
  if (coding === '' || coding === 'identity' || DECODERS[coding]) return coding || 'identity';
  throw errors.unreadableBody(
    `Content-Encoding "${header}" is not supported: send the body as is, or gzip, deflate or br`,
  );
}

/** The stream decoding a body of `coding` (see `bodyCoding`), for a pipeline; none if plain. */
export function decoders(coding: string): Transform[] {
  const decoder = DECODERS[coding];
  return decoder ? [decoder()] : [];
}

/** Whether an error is zlib's: a body that is not the compressed data its coding says. */
export function isDecodingError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(Z_|ERR__ERROR_)/.test(code);
}

/** The 400 for a body that is not what its `Content-Encoding` says. */
export function notDecodable(coding: string): ApiError {
  return errors.validation(`the request body is not ${coding} data, as its Content-Encoding says`);
}
