import { randomUUID } from 'node:crypto';

import type Koa from 'koa';
import { koaBody } from 'koa-body';

import { ApiError, BackendError, apiErrorOf, errors } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { isRedisUnreachable } from '../redis.js';
import type { Caller } from './auth.js';
import { bodyCoding, isDecodingError, notDecodable } from './content-coding.js';

export interface ApiState {
  requestId: string;
  log: Logger;
  /** Set by the bearer check; absent on open routes and refused requests. */
  caller?: Caller;
}

export type ApiContext = Koa.ParameterizedContext<ApiState>;

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** How the metrics name requests that no route took, so that junk paths add no series. */
const UNMATCHED = '(unmatched)';

/**
 * Gives each request an id (the caller's `X-Request-Id` when it is sane) and writes one log
 * line when the answer is sent; counts it in the metrics by route template and status.
 */
export function requestLog(
  logger: Logger,
  metrics?: Pick<Metrics, 'httpRequest'>,
): Koa.Middleware<ApiState> {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const given = ctx.get('X-Request-Id');
    const requestId = REQUEST_ID.test(given) ? given : randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.log = logger.child({ requestId });
    ctx.set('X-Request-Id', requestId);

    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      const route = typeof matched === 'string' ? matched : undefined;
      metrics?.httpRequest(ctx.method, route ?? UNMATCHED, ctx.status, ms / 1000);
      ctx.state.log.info(
        {
          method: ctx.method,
          route,
          path: ctx.path,
          status: ctx.status,
          caller: ctx.state.caller,
          ms: Math.round(ms * 10) / 10,
        },
        'request',
      );
    }
  };
}

/** What a 503 answer suggests waiting before the next try. */
export const RETRY_AFTER_S = 1;

/** Marks an answer 503: Redis or a backend is away for a moment, and the client may try again. */
export function unavailableFor(ctx: Koa.ParameterizedContext<unknown>): void {
  ctx.status = 503;
  ctx.set('Retry-After', String(RETRY_AFTER_S));
}

/**
 * The one error boundary: anything thrown becomes `{"error", "code", "details"?}`. Errors of
 * the catalogue keep their status and sentence; anything else is a plain 500, logged with its
 * stack.
 */
export function errorBoundary(): Koa.Middleware<ApiState> {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw errors.notFound(`${ctx.method} ${ctx.path}`);
      }
      if (ctx.status === 405 && ctx.body === undefined) {
        throw errors.methodNotAllowed(ctx.method, ctx.path, ctx.response.get('Allow'));
      }
    } catch (err) {
      const failure = toApiError(err);
      if (failure.status >= 500 && failure.code === 'internal_error') {
        ctx.state.log.error({ err }, 'unexpected error');
      }
      // What Redis or BullMQ said, which the answer does not: the operator's first clue.
      if (failure.code === 'queue_unavailable') {
        const { cause } = failure as { cause?: unknown };
        ctx.state.log.warn({ cause: String(cause ?? 'unknown') }, 'the job queue is unavailable');
      }
      if (failure.status === 503) unavailableFor(ctx);
      else ctx.status = failure.status;
      ctx.body = failure.toBody();
      if (failure.status === 401) ctx.set('WWW-Authenticate', 'Bearer realm="kitter"');
    }
  };
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BackendError) return apiErrorOf(err);
  if (isRedisUnreachable(err)) return errors.queueUnavailable(err);

  // Errors that Koa and its body parser raise carry an HTTP status that is safe to show.
  const status = (err as { status?: number; expose?: boolean })?.status;
  if (status === 413) return errors.payloadTooLarge('the limit');
  if (status === 415) return errors.unsupportedMediaType('application/json');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new ApiError(status, 'validation_failed', (err as Error).message);
  }
  return errors.internal();
}

export const JSON_LIMIT = '1mb';

/**
 * Parses JSON bodies of the requests `routed` says a route takes: 415 for another content type
 * or a content coding other than gzip, deflate or br, 400 for malformed JSON.
 */
export function jsonBody(
  routed: (ctx: Koa.ParameterizedContext<ApiState>) => boolean,
): Koa.Middleware<ApiState> {
  const parse = koaBody({
    json: true,
    jsonStrict: true,
    jsonLimit: JSON_LIMIT,
    multipart: false,
    urlencoded: false,
    text: false,
    onError: (err, ctx) => {
      if ((err as { status?: number }).status === 413) throw errors.payloadTooLarge(JSON_LIMIT);
      if (isDecodingError(err)) throw notDecodable(ctx.get('Content-Encoding'));
      // JSON, but `null`, a number or a string: every write takes an object.
      if (/only supports object and array/.test(err.message)) {
        throw errors.validation('the request body must be a JSON object');
      }
      throw errors.validation('the request body is not valid JSON');
    },
  });

  return async (ctx, next) => {
    if (!routed(ctx)) return next();
    const hasBody = ctx.request.length > 0 || ctx.get('Transfer-Encoding') !== '';
    if (hasBody && !ctx.is('application/json')) {
      throw errors.unsupportedMediaType('application/json');
    }
    // The body may come compressed (koa-body inflates it); a coding it cannot read is a 415.
    // Codings are case-insensitive, the inflater's names are not: it is given the name as read.
    if (hasBody) {
      const coding = bodyCoding(ctx.get('Content-Encoding'));
      if (coding === 'identity') delete ctx.req.headers['content-encoding'];
      else ctx.req.headers['content-encoding'] = coding;
    }
    return parse(ctx, next);
  };
}
