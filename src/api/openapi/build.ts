import type Joi from 'joi';
import joiToJson from 'joi-to-json';

import type { Config } from '../../config.js';
import { JSON_LIMIT } from '../middleware.js';
import { ref, schemas, type JsonSchema } from './schemas.js';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** One answer of an operation: a bare sentence stands for an error answer (`Error` body). */
export type Answer =
  | string
  | {
      description: string;
      /** The body; none for 204. */
      schema?: JsonSchema;
      example?: unknown;
      /** Defaults to application/json. */
      contentType?: string;
      headers?: Record<string, JsonSchema>;
    };

/** One operation kitter serves, as ../openapi.ts lists them. */
export interface OperationSpec {
  /** Unique, camelCase: the operationId and the anchor on /docs. */
  id: string;
  method: Method;
  /** The OpenAPI path template: `{id}` where the router has `:id`. */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  /** Answered without a bearer token. */
  open?: boolean;
  /** The joi schemas the route validates `ctx.params`, `ctx.query` and the body with. */
  params?: Joi.ObjectSchema;
  query?: Joi.ObjectSchema;
  body?: Joi.Schema;
  /** A body that is not JSON (a CSV upload): its description and media types, as is. */
  rawBody?: { description: string; content: Record<string, JsonSchema> };
  /** A valid request body: shown on /docs, checked against `body`, the seed of the fuzz test. */
  example?: unknown;
  /** What a path or query parameter means, by name. */
  notes?: Record<string, string>;
  /** A write carried out as a job: adds `Prefer`, the 202 answer, 502 and `Kitter-Job`. */
  job?: boolean;
  /** Takes `Idempotency-Key` without being a job (an import): adds that parameter. */
  idempotent?: boolean;
  /** A read that asks Keycloak or wac-core: adds 502. */
  backends?: boolean;
  /** For a route registered only under some configuration: when it is. */
  when?: (config: Config) => boolean;
  /**
   * The answers by status. Added for you: 500; 401, 403 and 503 unless `open`; 400 for a body or
   * parameters; 413 and 415 for a body.
   */
  responses: Record<number, Answer>;
}

export type OpenApiDocument = {
  openapi: string;
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { schemas: Record<string, JsonSchema> } & Record<string, Record<string, unknown>>;
} & Record<string, unknown>;

export interface OpenApiOperation {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  security?: unknown[];
  parameters?: JsonSchema[];
  requestBody?: JsonSchema;
  responses: Record<string, JsonSchema>;
}

const JSON_TYPE = 'application/json';

/** The body limit as people write it: `1mb` reads `1 MB`. */
export const BODY_LIMIT = JSON_LIMIT.replace(
  /^(\d+)\s*([kmg]b)$/i,
  (_all, n: string, unit: string) => `${n} ${unit.toUpperCase()}`,
);

const components = {
  schemas,
  securitySchemes: {
    bearer: {
      type: 'http',
      scheme: 'bearer',
      description: 'One of the tokens in `KITTER_API_TOKENS`.',
    },
  },
  parameters: {
    IdempotencyKey: {
      name: 'Idempotency-Key',
      in: 'header',
      description:
        'A repeat of the same write with the same key (within 24 h) answers the same job ' +
        'instead of doing the work twice; the same key with another body is a 409.',
      schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
    },
    Prefer: {
      name: 'Prefer',
      in: 'header',
      description:
        'How long to wait for the job (RFC 7240). `respond-async` answers 202 at once; ' +
        '`wait=N` waits up to N seconds (60 at most). Without it the API waits up to ' +
        '`KITTER_SYNC_TIMEOUT_MS` (10 s by default), then answers 202; a domain logout ' +
        'answers 202 at once.',
      schema: { type: 'string' },
      examples: {
        async: { value: 'respond-async' },
        wait: { value: 'wait=30' },
      },
    },
  },
  headers: {
    KitterJob: {
      description: 'The id of the job that did the work; read it at `/jobs/{id}`.',
      required: true,
      schema: { type: 'string' },
    },
    Location: {
      description: 'Where to follow the job: `/jobs/{id}`.',
      required: true,
      schema: { type: 'string', pattern: '^/jobs/[^/]+$' },
    },
    PreferenceApplied: {
      description: '`respond-async` when the client asked for it.',
      schema: { type: 'string' },
    },
    RetryAfter: {
      description: 'Seconds to wait before sending the same request again.',
      required: true,
      schema: { type: 'string', pattern: '^[0-9]+$' },
    },
    IdempotentReplayed: {
      description: '`true` when this answers a repeat of an earlier request with the same key.',
      schema: { const: 'true' },
    },
  },
  responses: {
    Accepted: {
      description:
        'The job is queued or still running: follow it at `Location`. Once it succeeds, its ' +
        '`result` holds what the synchronous answer would have carried.',
      headers: {
        Location: { $ref: '#/components/headers/Location' },
        'Kitter-Job': { $ref: '#/components/headers/KitterJob' },
        'Preference-Applied': { $ref: '#/components/headers/PreferenceApplied' },
        'Idempotent-Replayed': { $ref: '#/components/headers/IdempotentReplayed' },
      },
      content: { [JSON_TYPE]: { schema: ref('JobAnswer') } },
    },
    Unauthorized: errorResponse(
      '`unauthorized`: no bearer token, or not a valid one (unknown, expired, not an access ' +
        'token of the realm).',
    ),
    Forbidden: errorResponse(
      '`forbidden`: a Keycloak token without the role kitter requires (`KITTER_REQUIRED_ROLE`).',
    ),
    PayloadTooLarge: errorResponse(`\`payload_too_large\`: the body is over ${BODY_LIMIT}.`),
    UnsupportedMediaType: errorResponse(
      '`unsupported_media_type`: a body whose Content-Type is not application/json.',
    ),
    InternalError: errorResponse('`internal_error`: a fault of kitter; it is logged.'),
    BadGateway: errorResponse(
      "`backend_misconfigured`: Keycloak refused kitter's own credentials (403); the service " +
        'account lacks a role.',
    ),
    Unavailable: errorResponse(
      '`queue_unavailable` (Redis is down) or `backend_unavailable` (Keycloak or wac-core ' +
        'did not answer, or answered 5xx).',
      503,
    ),
  },
};

const SHARED: Record<number, string> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  413: 'PayloadTooLarge',
  415: 'UnsupportedMediaType',
  500: 'InternalError',
  502: 'BadGateway',
  503: 'Unavailable',
};

export const BAD_BODY =
  '`validation_failed`: the body is not JSON, or a field is invalid; `details` names each ' +
  'one, unknown keys included.';

const BAD_PARAMETER = '`validation_failed`: a malformed parameter; `details` names it.';

/** What every write adds to its 400 and 409 answers, through `Idempotency-Key`. */
const IDEMPOTENCY_FAILURES: Record<number, string> = {
  400: 'Also `validation_failed` for an `Idempotency-Key` not of 1–255 visible characters.',
  409:
    'Also `conflict` when the `Idempotency-Key` was used with another request, or when an ' +
    'operator removed the job while the request waited for it.',
};

export function buildDocument(
  info: OpenApiDocument['info'],
  all: OperationSpec[],
  config: Config,
): OpenApiDocument {
  const operations = all.filter((spec) => spec.when?.(config) ?? true);
  const paths: OpenApiDocument['paths'] = {};
  for (const spec of operations) {
    paths[spec.path] ??= {};
    if (paths[spec.path][spec.method]) throw new Error(`${spec.method} ${spec.path} twice`);
    paths[spec.path][spec.method] = operationOf(spec);
  }

  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    info,
    security: [{ bearer: [] }],
    tags: [...new Set(operations.map((spec) => spec.tag))].map((name) => ({ name })),
    paths,
    components,
  };
}

function operationOf(spec: OperationSpec): OpenApiOperation {
  const operation: OpenApiOperation = {
    operationId: spec.id,
    tags: [spec.tag],
    summary: spec.summary,
    responses: {},
  };
  if (spec.description) operation.description = spec.description;
  if (spec.open) operation.security = [];

  const parameters = [
    ...parametersOf(spec, 'path'),
    ...parametersOf(spec, 'query'),
    ...(spec.job ? [{ $ref: '#/components/parameters/Prefer' }] : []),
    ...(spec.job || spec.idempotent ? [{ $ref: '#/components/parameters/IdempotencyKey' }] : []),
  ];
  if (parameters.length > 0) operation.parameters = parameters;

  if (spec.body) {
    const media: JsonSchema = { schema: toJsonSchema(spec.body) };
    if (spec.example !== undefined) media.example = spec.example;
    operation.requestBody = {
      required: true,
      description:
        `JSON, at most ${BODY_LIMIT}. Strings are trimmed, and names and emails lower-cased, ` +
        'before these rules apply.',
      content: { [JSON_TYPE]: media },
    };
  }

  if (spec.rawBody) operation.requestBody = { required: true, ...spec.rawBody };

  const statuses = new Set(Object.keys(spec.responses).map(Number));
  if (spec.job) statuses.add(202).add(409);
  if (spec.job || spec.backends) statuses.add(502);
  if (!spec.open) statuses.add(401).add(403).add(503);
  if (spec.body || spec.rawBody || spec.params || spec.query || spec.job) statuses.add(400);
  if (spec.body || spec.rawBody) statuses.add(413).add(415);
  statuses.add(500);

  for (const status of [...statuses].sort((a, b) => a - b)) {
    operation.responses[String(status)] = responseOf(spec, status);
  }
  return operation;
}

function responseOf(spec: OperationSpec, status: number): JsonSchema {
  const answer = spec.responses[status];
  if (answer === undefined) return sharedResponse(spec, status);
  if (typeof answer === 'string') {
    return errorResponse(withIdempotency(spec, status, answer), status);
  }

  const response: JsonSchema = { description: answer.description };
  const headers: Record<string, JsonSchema> = { ...answer.headers };
  // The synchronous answer of a write names the job that did it.
  if (spec.job && status < 300) {
    headers['Kitter-Job'] = { $ref: '#/components/headers/KitterJob' };
    headers['Idempotent-Replayed'] = { $ref: '#/components/headers/IdempotentReplayed' };
  }
  if (Object.keys(headers).length > 0) response.headers = headers;

  if (answer.schema) {
    const media: JsonSchema = { schema: answer.schema };
    if (answer.example !== undefined) media.example = answer.example;
    response.content = { [answer.contentType ?? JSON_TYPE]: media };
  }
  return response;
}

/** An answer the operation does not list: one of the shared ones. */
function sharedResponse(spec: OperationSpec, status: number): JsonSchema {
  if (status === 202) return { $ref: '#/components/responses/Accepted' };
  if (status === 400) {
    return errorResponse(withIdempotency(spec, 400, spec.body ? BAD_BODY : BAD_PARAMETER));
  }
  if (status === 409) {
    return errorResponse(
      '`conflict`: the `Idempotency-Key` was used with another request, or an operator ' +
        'removed the job while the request waited for it.',
    );
  }
  return { $ref: `#/components/responses/${SHARED[status]}` };
}

function withIdempotency(spec: OperationSpec, status: number, sentence: string): string {
  const more = spec.job ? IDEMPOTENCY_FAILURES[status] : undefined;
  return more ? `${sentence} ${more}` : sentence;
}

/** An error answer; a 503 says when to try again. */
function errorResponse(description: string, status?: number): JsonSchema {
  const response: JsonSchema = { description, content: { [JSON_TYPE]: { schema: ref('Error') } } };
  if (status === 503)
    response.headers = { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } };
  return response;
}

/** Path or query parameters: one per key of the route's joi schema. */
function parametersOf(spec: OperationSpec, where: 'path' | 'query'): JsonSchema[] {
  const joi = where === 'path' ? spec.params : spec.query;
  const object = joi ? toJsonSchema(joi) : { properties: {}, required: [] };
  const properties = (object.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((object.required ?? []) as string[]);

  // A path parameter the route checks by hand (no joi schema) is still a string in the path.
  if (where === 'path') {
    for (const [, name] of spec.path.matchAll(/\{([^}]+)\}/g)) {
      properties[name] ??= { type: 'string' };
      required.add(name);
    }
  }

  return Object.entries(properties).map(([name, schema]) => {
    const parameter: JsonSchema = { name, in: where, required: required.has(name), schema };
    const note = spec.notes?.[name] ?? schema.description;
    if (note) parameter.description = note;
    if (schema.type === 'object') Object.assign(parameter, { style: 'deepObject', explode: true });
    return parameter;
  });
}

// joi-to-json is CommonJS whose module.exports is the function, but its types declare ES
// exports, so TypeScript sees a namespace; what Node hands an ES import is the function.
const joiToJsonSchema = joiToJson as unknown as (joi: Joi.Schema, mode: 'open-api-3.1') => unknown;

/** The JSON Schema of a joi schema, as joi-to-json converts it for OpenAPI 3.1. */
export function toJsonSchema(joi: Joi.Schema): JsonSchema {
  const schema = joiToJsonSchema(joi, 'open-api-3.1') as JsonSchema;
  complete(joi.describe() as JoiDescription, schema);
  return schema;
}

interface JoiDescription {
  type?: string;
  flags?: { result?: string };
  rules?: Array<{ name: string; args?: { limit?: number } }>;
  keys?: Record<string, JoiDescription>;
}

/**
 * Adds what joi-to-json (5.0) leaves out: the size of an object (`.min(1)` on a patch) and
 * keys that are accepted but dropped (`.strip()`, the deprecated user `id`).
 */
function complete(joi: JoiDescription, schema: JsonSchema): void {
  if (joi.flags?.result === 'strip') {
    Object.assign(schema, { deprecated: true, description: 'Accepted and ignored.' });
  }
  if (joi.type !== 'object') return;

  for (const rule of joi.rules ?? []) {
    if (rule.name === 'min') schema.minProperties = rule.args?.limit;
    if (rule.name === 'max') schema.maxProperties = rule.args?.limit;
  }
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  for (const [key, child] of Object.entries(joi.keys ?? {})) {
    if (properties[key]) complete(child, properties[key]);
  }
}
