import { BackendError, kindOfStatus, type Backend } from '../errors.js';

/**
 * Turns whatever a fetch-based call threw into a BackendError: an HTTP error answer (the
 * admin client's NetworkError carries `response` and `responseData`), a timeout, or a
 * transport failure.
 */
export function backendErrorOf(
  err: unknown,
  operation: string,
  backend: Backend = 'keycloak',
): BackendError {
  if (err instanceof BackendError) return err;

  const answer = err as { response?: { status?: number }; responseData?: unknown };
  const status = answer?.response?.status;
  if (typeof status === 'number') {
    return new BackendError(
      backend,
      operation,
      kindOfStatus(status),
      status,
      describeBody(answer.responseData),
    );
  }

  // fetch aborts with TimeoutError or AbortError; undici names ConnectTimeoutError,
  // HeadersTimeoutError and BodyTimeoutError.
  const name = String((err as Error)?.name ?? '');
  if (name.endsWith('TimeoutError') || name === 'AbortError') {
    return new BackendError(backend, operation, 'timeout', undefined, 'no answer in time');
  }

  const cause = (err as { cause?: { code?: string } })?.cause;
  const code = cause?.code ?? (err as { code?: string })?.code;
  return new BackendError(backend, operation, 'transport', undefined, code ?? 'network error');
}

/** The readable part of an error body in either of Keycloak's shapes, shortened. */
export function describeBody(data: unknown): string {
  if (typeof data === 'string') return data.slice(0, 200);
  if (typeof data !== 'object' || data === null) return '';

  const body = data as Record<string, unknown>;
  const parts = [body.errorMessage, body.error_description, body.message, body.error].filter(
    (part): part is string => typeof part === 'string' && part !== '',
  );
  const field = typeof body.field === 'string' ? ` (field ${body.field})` : '';
  return `${parts[0] ?? ''}${field}`.slice(0, 200);
}
