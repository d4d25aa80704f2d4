import { ApiError, type ErrorBody, type ErrorCode } from '../errors.js';

/** What a failed job says, as the synchronous answer would have said it. */
export interface JobError {
  status: number;
  code: ErrorCode;
  error: string;
}

/**
 * A failed job's reason is kept by BullMQ as one string, shown as is on dashboards; kitter
 * writes it as `<status> <code>: <sentence>` so people can read it and the API can parse it.
 */
export function encodeFailure(err: ApiError): string {
  return `${err.status} ${err.code}: ${err.message}`;
}

const ENCODED = /^(\d{3}) ([a-z_]+): ([\s\S]*)$/;

export function decodeFailure(reason: string | undefined): JobError {
  const match = ENCODED.exec(reason ?? '');
  if (!match) {
    // Not written by kitter: a stall limit, a crash in a processor. Its text stays in the
    // worker's log; clients get a plain sentence.
    return { status: 500, code: 'internal_error', error: 'the job failed unexpectedly' };
  }
  return { status: Number(match[1]), code: match[2] as ErrorCode, error: match[3] };
}

export function errorBodyOf(failure: JobError): ErrorBody {
  return { error: failure.error, code: failure.code };
}
