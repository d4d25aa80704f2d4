import { COUNTED_STATES, METRICS_MINUTES } from '../../jobs/queue-status.js';
import { JOB_TYPES, QUEUE_NAMES, type JobType } from '../../jobs/queues.js';
import { SERVICE_NAMES } from '../../model/domains.js';
import { MASKED } from '../../model/users.js';

/**
 * The shapes kitter answers, as JSON Schema 2020-12 (the dialect of OpenAPI 3.1), written by
 * hand in this one place. Request shapes are not here: they are converted from the joi schemas
 * the routes validate with (see ../openapi.ts), so they cannot drift from the code.
 */

export type JsonSchema = { [keyword: string]: unknown };

/** A reference to one of the schemas below (the OpenAPI test checks that each resolves). */
export function ref(name: string): JsonSchema {
  return { $ref: `#/components/schemas/${name}` };
}

const text = { type: 'string' };
const texts = { type: 'array', items: text };
const nullable = (type: string) => ({ type: [type, 'null'] });
const timestamp = { type: 'string', format: 'date-time' };
const perHour = {
  type: 'array',
  items: { type: 'integer', minimum: 0 },
  minItems: METRICS_MINUTES,
  maxItems: METRICS_MINUTES,
};
const QUEUE_COUNTS = COUNTED_STATES.map((state) => state.replace('-', '_'));
const count = { type: 'integer', minimum: 0 };

export const EXAMPLE_DOMAIN = {
  id: '507f1f77bcf86cd799439011',
  domain: 'example.com',
  enable_anonymous: false,
  anonymous_capabilities: [],
  origins: ['/.*/'],
  parent: null,
  remote_sip_register: false,
  services: { meetings: ['default'] },
};

export const EXAMPLE_USER = {
  id: '550e8400-e29b-41d4-a716-446655440000',
  username: 'johndoe',
  email: 'john@example.com',
  enabled: true,
  first_name: 'John',
  last_name: 'Doe',
  email_verified: false,
  attributes: {
    domain: 'example.com',
    phone_number: '+34612345678',
    capabilities: ['+chat', '+whiteboard'],
    sip_mapping: {
      username: 'sip_user',
      password: MASKED,
      sip_domain: 'example.com',
      sip_auth_proxy: 'sip:127.0.0.1:15060',
    },
  },
};

export const EXAMPLE_JOB = {
  id: '3f1c1a52-8a7e-4a4b-9d59-2f8e7c1b6a10',
  type: JOB_TYPES.userCreate,
  state: 'queued',
  progress: 0,
  attempts: 0,
  created_at: '2025-01-01T12:00:00.000Z',
  finished_at: null,
  result: null,
  error: null,
};

const RECONCILE_LEFT = [
  {
    kind: 'keycloak_only',
    domain: 'example.com',
    username: 'johndoe',
    keycloak_id: '550e8400-e29b-41d4-a716-446655440000',
    wac_core_id: null,
  },
  {
    kind: 'different',
    domain: 'example.com',
    username: 'janedoe',
    keycloak_id: '6f1c2a9e-0d3b-4e57-9a61-2c8b7d4e5f10',
    wac_core_id: '507f1f77bcf86cd799439012',
    differences: [
      { field: 'email', keycloak: 'jane@example.com', wac_core: 'jane@old.example.com' },
    ],
  },
  {
    kind: 'unlinked',
    domain: 'example.com',
    username: 'legacy',
    keycloak_id: null,
    wac_core_id: '507f1f77bcf86cd799439013',
  },
];

export const EXAMPLE_IMPORT = {
  id: '1b4e28ba-2fa1-4d2b-883f-0016d3cca427',
  state: 'running',
  dry_run: false,
  filename: 'customers.csv',
  total: 1000,
  valid: 998,
  invalid: 2,
  succeeded: 640,
  failed: 1,
  cancelled: 0,
  pending: 357,
  created_at: '2026-12-04T10:00:00.000Z',
  finished_at: null,
  first_errors: [{ row: 17, reason: 'email: must be a valid email' }],
};

const quietHour = Array<number>(METRICS_MINUTES).fill(0);

export const EXAMPLE_QUEUE = {
  name: 'provisioning',
  paused: false,
  workers: 2,
  counts: {
    waiting: 3,
    active: 2,
    delayed: 0,
    prioritized: 0,
    waiting_children: 0,
    completed: 5,
    failed: 2,
  },
  oldest_waiting_s: 1.25,
  per_minute: { completed: [5, ...quietHour.slice(1)], failed: [2, ...quietHour.slice(1)] },
  last_hour: { completed: 5, failed: 2 },
};

export const EXAMPLE_RECONCILE_REPORT = {
  domains: 1,
  keycloak_users: 3,
  wac_core_users: 3,
  drift: [
    { ...RECONCILE_LEFT[0], fixable: true },
    { ...RECONCILE_LEFT[1], fixable: true },
    { ...RECONCILE_LEFT[2], fixable: false, reason: 'no externalId: not made by kitter' },
  ],
  fixed: [],
  left: [
    { ...RECONCILE_LEFT[0], reason: 'not repaired: a read-only run' },
    { ...RECONCILE_LEFT[1], reason: 'not repaired: a read-only run' },
    { ...RECONCILE_LEFT[2], reason: 'no externalId: not made by kitter' },
  ],
};

/** What every user of a reconciliation report says: which user, and what kind of drift. */
const reconciledUser = {
  required: ['kind', 'domain', 'username', 'keycloak_id', 'wac_core_id'],
  properties: {
    kind: {
      enum: ['keycloak_only', 'wac_core_only', 'unlinked', 'different'],
      description:
        '`keycloak_only`: a Keycloak user without a wac-core user; `wac_core_only`: a ' +
        'wac-core user whose `externalId` names no Keycloak user; `unlinked`: a wac-core user ' +
        'without `externalId` (not made by kitter); `different`: both exist but disagree.',
    },
    domain: {
      type: 'string',
      description: "The user's domain name: Keycloak's when Keycloak has the user.",
    },
    username: text,
    keycloak_id: nullable('string'),
    wac_core_id: nullable('string'),
    differences: {
      type: 'array',
      items: ref('ReconcileDifference'),
      description: 'For `different`: each field that differs, with both values.',
    },
  },
};

/**
 * What a succeeded job's `result` holds, by job type: the body the synchronous answer would
 * have had (`{"user": User}`), or null where that answer has no body (204). A row of an import
 * cancelled before it started ends with `{"cancelled": reason}` instead of a user.
 */
const JOB_RESULTS: Partial<Record<JobType, JsonSchema>> = {
  'user.create': {
    anyOf: [
      ref('UserAnswer'),
      {
        type: 'object',
        description: 'An import row dropped because its import was cancelled before it started',
        required: ['cancelled'],
        properties: { cancelled: { type: 'string' } },
        additionalProperties: false,
      },
    ],
  },
  'user.update': ref('UserAnswer'),
  'user.delete': { type: 'null' },
  'user.logout': { type: 'null' },
  'domain.create': ref('DomainAnswer'),
  'domain.update': ref('DomainAnswer'),
  'domain.delete': { type: 'null' },
  'domain.logout': ref('LogoutCount'),
  'htable.create': ref('HtableEntry'),
  'htable.delete': { type: 'null' },
  'import.cancel': ref('ImportAnswer'),
};

export const schemas = {
  Error: {
    type: 'object',
    description:
      'The body of every answer that is not 2xx. `code` is a stable word to branch on; ' +
      '`details` names every invalid field of a request.',
    required: ['error', 'code'],
    properties: {
      error: { type: 'string', description: 'One readable sentence.' },
      code: {
        type: 'string',
        pattern: '^[a-z][a-z_]*$',
        description: 'A stable machine word, such as `validation_failed` or `not_found`.',
      },
      details: { type: 'array', items: ref('ErrorDetail') },
    },
    additionalProperties: false,
    examples: [
      {
        error: 'the request body is invalid: user.username is required',
        code: 'validation_failed',
        details: [{ path: 'user.username', message: 'user.username is required' }],
      },
    ],
  },

  ErrorDetail: {
    type: 'object',
    required: ['path', 'message'],
    properties: {
      path: { type: 'string', description: 'Dotted path of the field, e.g. `user.email`.' },
      message: text,
    },
    additionalProperties: false,
  },

  Domain: {
    type: 'object',
    description: 'A domain of the platform, kept in wac-core.',
    required: [
      'id',
      'domain',
      'enable_anonymous',
      'anonymous_capabilities',
      'origins',
      'parent',
      'remote_sip_register',
      'services',
    ],
    properties: {
      id: { type: 'string', pattern: '^[0-9a-f]{24}$', description: 'Given by wac-core.' },
      domain: { type: 'string', description: 'The domain name, lower case.' },
      enable_anonymous: { type: 'boolean', description: 'Whether anonymous users may log in.' },
      anonymous_capabilities: texts,
      origins: { ...texts, description: 'Origins allowed to use the domain.' },
      parent: { ...nullable('string'), description: 'The parent domain name, if any.' },
      remote_sip_register: { type: 'boolean' },
      services: ref('DomainServices'),
    },
    additionalProperties: false,
    examples: [EXAMPLE_DOMAIN],
  },

  DomainServices: {
    type: 'object',
    description: "The domain's enabled services, each a list of settings.",
    properties: Object.fromEntries(SERVICE_NAMES.map((name) => [name, texts])),
    additionalProperties: false,
  },

  DomainAnswer: {
    type: 'object',
    required: ['domain'],
    properties: { domain: ref('Domain') },
    additionalProperties: false,
  },

  DomainList: {
    type: 'object',
    required: ['domains'],
    properties: { domains: { type: 'array', items: ref('Domain') } },
    additionalProperties: false,
  },

  User: {
    type: 'object',
    description:
      'A user, read from both Keycloak and wac-core. Passwords are never answered: the SIP ' +
      `password always reads \`${MASKED}\`.`,
    required: [
      'id',
      'username',
      'email',
      'enabled',
      'first_name',
      'last_name',
      'email_verified',
      'attributes',
    ],
    properties: {
      id: { type: 'string', description: 'The Keycloak user id.' },
      username: { type: 'string', description: 'Lower case, as Keycloak keeps it.' },
      email: nullable('string'),
      enabled: { type: 'boolean' },
      first_name: nullable('string'),
      last_name: nullable('string'),
      email_verified: { type: 'boolean' },
      attributes: ref('UserAttributes'),
    },
    additionalProperties: false,
    examples: [EXAMPLE_USER],
  },

  UserAttributes: {
    type: 'object',
    required: ['domain', 'capabilities'],
    properties: {
      domain: { type: 'string', description: "The user's domain name." },
      phone_number: text,
      capabilities: {
        ...texts,
        description: 'Capabilities such as `+chat` or `-whiteboard`, kept in wac-core.',
      },
      sip_mapping: ref('SipMapping'),
    },
    additionalProperties: false,
  },

  SipMapping: {
    type: 'object',
    description: "The user's SIP credentials in wac-core; present only when the user has one.",
    required: ['username', 'password', 'sip_domain', 'sip_auth_proxy'],
    properties: {
      username: text,
      password: { const: MASKED, description: 'Always masked.' },
      sip_domain: {
        ...nullable('string'),
        description: 'null when wac-core has none (a mapping made outside kitter).',
      },
      sip_auth_proxy: { ...nullable('string'), description: 'null when wac-core has none.' },
    },
    additionalProperties: false,
  },

  UserAnswer: {
    type: 'object',
    required: ['user'],
    properties: { user: ref('User') },
    additionalProperties: false,
  },

  UserList: {
    type: 'object',
    required: ['users', 'total'],
    properties: {
      users: { type: 'array', items: ref('User') },
      total: { type: 'integer', minimum: 0, description: 'Users matching, on every page.' },
    },
    additionalProperties: false,
  },

  LogoutCount: {
    type: 'object',
    description: 'How many of the domain users were logged out.',
    required: ['done', 'total'],
    properties: {
      done: { type: 'integer', minimum: 0 },
      total: { type: 'integer', minimum: 0 },
    },
    additionalProperties: false,
  },

  HtableEntry: {
    type: 'object',
    description: 'An entry of the caller-id table.',
    required: ['name', 'value'],
    properties: { name: text, value: text },
    additionalProperties: false,
  },

  HtableList: {
    type: 'object',
    required: ['entries', 'total'],
    properties: {
      entries: { type: 'array', items: ref('HtableEntry') },
      total: { type: 'integer', minimum: 0, description: 'Entries matching, on every page.' },
    },
    additionalProperties: false,
  },

  Job: {
    type: 'object',
    description:
      'A queued write. `result` is set once the job `succeeded`, `error` once it `failed`.',
    required: [
      'id',
      'type',
      'state',
      'progress',
      'attempts',
      'created_at',
      'finished_at',
      'result',
      'error',
    ],
    properties: {
      id: { type: 'string' },
      type: { enum: Object.values(JOB_TYPES) },
      state: { enum: ['queued', 'running', 'succeeded', 'failed'] },
      progress: { type: 'number', minimum: 0, maximum: 100, description: 'Percent done.' },
      done: {
        type: 'integer',
        minimum: 0,
        description: 'Jobs that fan out over many users (a domain logout): users done so far.',
      },
      total: { type: 'integer', minimum: 0, description: 'With `done`: users in all.' },
      attempts: { type: 'integer', minimum: 0, description: 'Attempts started so far.' },
      created_at: timestamp,
      finished_at: { ...nullable('string'), format: 'date-time' },
      result: {
        description:
          'Once succeeded, the body the synchronous answer would have had: `{"user": ...}`, ' +
          '`{"domain": ...}`, the logout count or the entry; `null` where that answer is a 204.',
      },
      error: { anyOf: [ref('JobError'), { type: 'null' }] },
    },
    additionalProperties: false,
    allOf: Object.entries(JOB_RESULTS).map(([type, result]) => ({
      if: { properties: { type: { const: type }, state: { const: 'succeeded' } } },
      then: { properties: { result } },
    })),
    examples: [EXAMPLE_JOB],
  },

  JobError: {
    type: 'object',
    description: 'Why a job failed: the status and body the synchronous answer would have had.',
    required: ['status', 'code', 'error'],
    properties: {
      status: { type: 'integer', minimum: 400, maximum: 599 },
      code: { type: 'string', pattern: '^[a-z][a-z_]*$' },
      error: text,
    },
    additionalProperties: false,
  },

  JobAnswer: {
    type: 'object',
    required: ['job'],
    properties: { job: ref('Job') },
    additionalProperties: false,
  },

  JobList: {
    type: 'object',
    required: ['jobs', 'total'],
    properties: {
      jobs: { type: 'array', items: ref('Job') },
      total: { type: 'integer', minimum: 0, description: 'Jobs that match, on all pages.' },
    },
    additionalProperties: false,
  },

  QueueStatus: {
    type: 'object',
    description: 'One queue, read from Redis when asked.',
    required: [
      'name',
      'paused',
      'workers',
      'counts',
      'oldest_waiting_s',
      'per_minute',
      'last_hour',
    ],
    properties: {
      name: { enum: [...QUEUE_NAMES] },
      paused: { type: 'boolean', description: 'Workers take no new job while it is paused.' },
      workers: {
        type: ['integer', 'null'],
        minimum: 0,
        description: 'Live workers over all processes; null where Redis refuses CLIENT LIST.',
      },
      counts: {
        type: 'object',
        description: 'Jobs by BullMQ state.',
        required: [...QUEUE_COUNTS],
        properties: Object.fromEntries(
          QUEUE_COUNTS.map((state) => [state, { type: 'integer', minimum: 0 }]),
        ),
        additionalProperties: false,
      },
      oldest_waiting_s: {
        type: ['number', 'null'],
        minimum: 0,
        description: 'Seconds since the oldest job waiting to start was queued; null if none.',
      },
      per_minute: {
        type: 'object',
        description:
          'Jobs that ended each minute over the last hour, newest first: `[0]` is the minute ' +
          'under way.',
        required: ['completed', 'failed'],
        properties: { completed: perHour, failed: perHour },
        additionalProperties: false,
      },
      last_hour: {
        type: 'object',
        required: ['completed', 'failed'],
        properties: {
          completed: { type: 'integer', minimum: 0 },
          failed: { type: 'integer', minimum: 0 },
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },

  QueueList: {
    type: 'object',
    required: ['queues'],
    properties: { queues: { type: 'array', items: ref('QueueStatus') } },
    additionalProperties: false,
  },

  QueueAnswer: {
    type: 'object',
    required: ['queue'],
    properties: { queue: ref('QueueStatus') },
    additionalProperties: false,
  },

  Liveness: {
    type: 'object',
    required: ['status'],
    properties: { status: { const: 'ok' } },
    additionalProperties: false,
  },

  Readiness: {
    type: 'object',
    required: ['status', 'checks'],
    properties: { status: { const: 'ready' }, checks: ref('ReadinessChecks') },
    additionalProperties: false,
  },

  ReadinessFailure: {
    type: 'object',
    description: 'An error answer that also says what each check found.',
    required: ['error', 'code', 'checks'],
    properties: {
      error: text,
      code: { const: 'backend_unavailable' },
      checks: ref('ReadinessChecks'),
    },
    additionalProperties: false,
  },

  ReadinessChecks: {
    type: 'object',
    description: 'Per dependency: `ok`, `timeout`, or what went wrong.',
    required: ['redis', 'keycloak', 'wac_core'],
    properties: { redis: text, keycloak: text, wac_core: text },
    additionalProperties: false,
  },

  Import: {
    type: 'object',
    description:
      'A bulk import. `state`: `validating` while the file is read, `running` while rows are ' +
      'pending, then `finished` or `cancelled`. `pending` = `valid` − `succeeded` − `failed` − ' +
      '`cancelled`. Row numbers are as a spreadsheet shows them: the header is row 1.',
    required: [
      'id',
      'state',
      'dry_run',
      'filename',
      'total',
      'valid',
      'invalid',
      'succeeded',
      'failed',
      'cancelled',
      'pending',
      'created_at',
      'finished_at',
      'first_errors',
    ],
    properties: {
      id: text,
      state: { enum: ['validating', 'running', 'finished', 'cancelled'] },
      dry_run: { type: 'boolean' },
      filename: nullable('string'),
      total: count,
      valid: count,
      invalid: count,
      succeeded: count,
      failed: count,
      cancelled: count,
      pending: count,
      created_at: timestamp,
      finished_at: { ...nullable('string'), format: 'date-time' },
      first_errors: {
        type: 'array',
        maxItems: 10,
        items: {
          type: 'object',
          required: ['row', 'reason'],
          properties: { row: { type: 'integer', minimum: 2 }, reason: text },
          additionalProperties: false,
        },
      },
    },
    additionalProperties: false,
    examples: [EXAMPLE_IMPORT],
  },

  ImportAnswer: {
    type: 'object',
    required: ['import'],
    properties: { import: ref('Import') },
    additionalProperties: false,
  },

  ImportList: {
    type: 'object',
    required: ['imports'],
    properties: { imports: { type: 'array', items: ref('Import') } },
    additionalProperties: false,
  },

  ReconcileReport: {
    type: 'object',
    description:
      'What a reconciliation found (`drift`), repaired (`fixed`, only by `kitter reconcile ' +
      '--fix`) and left as it is (`left`, with the reason).',
    required: ['domains', 'keycloak_users', 'wac_core_users', 'drift', 'fixed', 'left'],
    properties: {
      domains: { type: 'integer', minimum: 0, description: 'Domains compared.' },
      keycloak_users: {
        type: 'integer',
        minimum: 0,
        description: 'Keycloak users read (by their `domain` attribute).',
      },
      wac_core_users: { type: 'integer', minimum: 0, description: 'wac-core users read.' },
      drift: { type: 'array', items: ref('ReconcileDrift') },
      fixed: { type: 'array', items: ref('ReconcileFixed') },
      left: { type: 'array', items: ref('ReconcileLeft') },
    },
    additionalProperties: false,
    examples: [EXAMPLE_RECONCILE_REPORT],
  },

  ReconcileDrift: {
    type: 'object',
    description: 'A user in only one system, or different in the two.',
    required: [...reconciledUser.required, 'fixable'],
    properties: {
      ...reconciledUser.properties,
      fixable: { type: 'boolean', description: 'Whether `kitter reconcile --fix` repairs it.' },
      reason: { type: 'string', description: 'When not fixable: why it is left alone.' },
    },
    additionalProperties: false,
  },

  ReconcileFixed: {
    type: 'object',
    description: 'A drift item that was repaired.',
    required: [...reconciledUser.required, 'action'],
    properties: { ...reconciledUser.properties, action: { type: 'string' } },
    additionalProperties: false,
  },

  ReconcileLeft: {
    type: 'object',
    description: 'A drift item still there at the end of the run.',
    required: [...reconciledUser.required, 'reason'],
    properties: { ...reconciledUser.properties, reason: { type: 'string' } },
    additionalProperties: false,
  },

  ReconcileDifference: {
    type: 'object',
    required: ['field', 'keycloak', 'wac_core'],
    properties: {
      field: { enum: ['username', 'email', 'domain'] },
      keycloak: nullable('string'),
      wac_core: nullable('string'),
    },
    additionalProperties: false,
  },
} satisfies Record<string, JsonSchema>;
