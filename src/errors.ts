/**
 * Every error kitter answers or records, in one place: the HTTP status, a stable code, and a
 * sentence that may reach the client. Anything thrown that is not one of these is answered as
 * a plain 500 and logged with its stack.
 */

export type ErrorCode =
  | 'validation_failed'
  | 'unknown_domain'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'not_acceptable'
  | 'backend_rejected'
  | 'backend_misconfigured'
  | 'backend_unavailable'
  | 'queue_unavailable'
  | 'internal_error';

export interface ErrorDetail {
  path: string;
  message: string;
}

/** The body of every non-2xx answer, and the `error` of a failed job. */
export interface ErrorBody {
  error: string;
  code: ErrorCode;
  details?: ErrorDetail[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorDetail[],
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: this.message, code: this.code };
    if (this.details) body.details = this.details;
    return body;
  }
}

export const errors = {
  validation: (message: string, details?: ErrorDetail[]) =>
    new ApiError(400, 'validation_failed', message, details),
  unknownDomain: (domain: string, path = 'user.attributes.domain') =>
    new ApiError(400, 'unknown_domain', `domain "${domain}" does not exist`, [
      { path, message: 'no such domain in wac-core' },
    ]),
  unauthorized: (message = 'a valid bearer token is required') =>
    new ApiError(401, 'unauthorized', message),
  forbidden: (message = 'this token may not do that') => new ApiError(403, 'forbidden', message),
  notFound: (what: string) => new ApiError(404, 'not_found', `${what} not found`),
  methodNotAllowed: (method: string, path: string, allowed: string) =>
    new ApiError(405, 'method_not_allowed', `${path} does not take ${method}; use ${allowed}`),
  conflict: (message: string) => new ApiError(409, 'conflict', message),
  importFinished: (id: string) =>
    new ApiError(409, 'conflict', `import ${id} has finished; there is nothing left to cancel`),
  payloadTooLarge: (limit: string) =>
    new ApiError(413, 'payload_too_large', `the request body is larger than ${limit}`),
  unsupportedMediaType: (expected: string) =>
    new ApiError(415, 'unsupported_media_type', `the request body must be ${expected}`),
  /** A body of the right type that kitter cannot read as sent: its coding, its charset. */
  unreadableBody: (message: string) => new ApiError(415, 'unsupported_media_type', message),
  /** `cause`, what Redis or BullMQ said, is logged, never answered. */
  queueUnavailable: (cause?: unknown) =>
    Object.assign(
      new ApiError(503, 'queue_unavailable', 'the job queue (Redis) is not reachable; try again'),
      cause === undefined ? {} : { cause },
    ),
  internal: () => new ApiError(500, 'internal_error', 'internal error'),
};

export type Backend = 'keycloak' | 'wac-core';

/**
 * What went wrong talking to a backend, by kind, so callers branch on the kind and never on
 * message text.
 */
export type BackendErrorKind =
  | 'transport' // connection refused, reset, DNS: nothing was answered
  | 'timeout'
  | 'unauthorized' // 401: a token expired or was revoked
  | 'forbidden' // 403: kitter lacks a role; configuration, never worth a retry
  | 'rejected' // 400 and other 4xx: the request itself is wrong
  | 'not_found'
  | 'conflict'
  | 'rate_limited' // 429
  | 'unavailable'; // 5xx

const RETRYABLE = new Set<BackendErrorKind>([
  'transport',
  'timeout',
  'unauthorized',
  'rate_limited',
  'unavailable',
]);

export class BackendError extends Error {
  constructor(
    readonly backend: Backend,
    readonly operation: string,
    readonly kind: BackendErrorKind,
    readonly status: number | undefined,
    /** What the backend said, shortened; never holds request secrets. */
    readonly detail: string,
  ) {
    super(`${backend} ${operation}: ${status ?? kind}${detail ? ` ${detail}` : ''}`);
    this.name = 'BackendError';
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.kind);
  }
}

export function kindOfStatus(status: number): BackendErrorKind {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'unavailable';
  return 'rejected';
}

const BACKEND_NAMES: Record<Backend, string> = { keycloak: 'Keycloak', 'wac-core': 'wac-core' };

/** How a backend failure is answered to a client (or recorded as a failed job's error). */
export function apiErrorOf(err: BackendError): ApiError {
  const name = BACKEND_NAMES[err.backend];
  const said = err.detail ? `: ${err.detail}` : '';

  switch (err.kind) {
    case 'conflict':
      return new ApiError(409, 'conflict', `${name} refused ${err.operation}${said}`);
    case 'not_found':
      return new ApiError(404, 'not_found', `${name} has no such record (${err.operation})`);
    case 'rejected':
      return new ApiError(400, 'backend_rejected', `${name} rejected ${err.operation}${said}`);
    case 'forbidden':
      return new ApiError(
        502,
        'backend_misconfigured',
        `${name} refused kitter's credentials for ${err.operation} (403); ` +
          'check the service account roles',
      );
    default:
      return new ApiError(
        503,
        'backend_unavailable',
        `${name} is unavailable (${err.operation}: ${err.status ?? err.kind})`,
      );
  }
}
