import type { Backend, BackendError } from '../errors.js';

/** One request to a backend, as the metrics count it. */
export interface BackendCall {
  backend: Backend;
  operation: string;
  /** The HTTP status; `2xx` where the client does not tell which; else `transport`, `timeout`. */
  status: string;
  seconds: number;
}

/** Told of every request a client makes, retries on a new token included. */
export type ObserveCall = (call: BackendCall) => void;

/** The status of a call that failed: what the backend answered, or how no answer came. */
export function statusOfFailure(err: BackendError): string {
  return err.status === undefined ? err.kind : String(err.status);
}
