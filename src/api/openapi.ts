/**
 * The OpenAPI 3.1 document of kitter's API, served at `/openapi.json` and rendered at `/docs`.
 *
 * How to add an endpoint to the document:
 * 1. Add one entry to `operations` below: a unique camelCase `id`, method, path (`{id}` where
 *    the router has `:id`), tag and summary; `when` if the route exists only under some
 *    configuration.
 * 2. Give it the joi schemas the route validates with (`params`, `query`, `body`): export them
 *    from the route or src/model/ and import them here, never retype them. A body needs an
 *    `example` the route accepts (shown on /docs, and the seed of the fuzz test).
 * 3. List its answers by status: a bare sentence is an error answer (`Error` body); a success
 *    gets a `schema` (a `ref(...)` to ./openapi/schemas.ts, where new response shapes go) and
 *    an `example`. Added for you: 500; 401, 403 and 503 unless `open`; 400 for parameters or a
 *    body, 413 and 415 for a body; `backends: true` adds 502; `job: true` (a write run as a
 *    job) adds `Prefer`, `Idempotency-Key`, 202, 409, 502 and the `Kitter-Job` header.
 * `npm test` checks the rest: test/integration/openapi.test.ts fails while a registered route is
 * missing here or an entry here has no route, and every answer an integration test receives is
 * checked against what is written here (test/support/contract.ts).
 */
import { readFileSync } from 'node:fs';

import type { Config } from '../config.js';
import { COLUMNS } from '../imports/columns.js';
import { domainPatchSchema } from '../model/domains.js';
import { userPatchSchema } from '../model/users.js';
import {
  BAD_BODY,
  BODY_LIMIT,
  buildDocument,
  toJsonSchema,
  type OpenApiDocument,
  type OperationSpec,
} from './openapi/build.js';
import {
  EXAMPLE_DOMAIN,
  EXAMPLE_JOB,
  EXAMPLE_QUEUE,
  EXAMPLE_IMPORT,
  EXAMPLE_RECONCILE_REPORT,
  EXAMPLE_USER,
  ref,
} from './openapi/schemas.js';
import { loginForm } from './admin/login.js';
import { MAX_PAGE } from './params.js';
import { domainCreateBody, domainIdPath, domainListQuery } from './routes/domains.js';
import { htableCreateBody, htableListQuery, htableNamePath } from './routes/htable.js';
import { importIdPath, importQuery } from './routes/imports.js';
import { jobListQuery } from './routes/jobs.js';
import { reconcileQuery } from './routes/reconcile.js';
import { userCreateBody, userIdPath, userListQuery, userPath } from './routes/users.js';

const REJECTED = '`backend_rejected`: Keycloak or wac-core refused a value.';
const PAGING = {
  'paginate[max]': `Items a page, at most ${MAX_PAGE}.`,
  'paginate[page]': 'The page, from 0.',
};
const htableEnabled = (config: Config) => config.htableEnabled;
const html = { type: 'string' };

export const operations: OperationSpec[] = [
  {
    id: 'getLiveness',
    method: 'get',
    path: '/health/live',
    tag: 'health',
    summary: 'The process runs',
    open: true,
    responses: {
      200: { description: 'Alive.', schema: ref('Liveness'), example: { status: 'ok' } },
    },
  },
  {
    id: 'getReadiness',
    method: 'get',
    path: '/health/ready',
    tag: 'health',
    summary: 'Redis, a Keycloak token and wac-core each answer',
    description: 'Each check gives up after 2 s.',
    open: true,
    responses: {
      200: {
        description: 'Ready.',
        schema: ref('Readiness'),
        example: { status: 'ready', checks: { redis: 'ok', keycloak: 'ok', wac_core: 'ok' } },
      },
      503: {
        description: '`backend_unavailable`: something is down; `checks` says what.',
        headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } },
        schema: ref('ReadinessFailure'),
        example: {
          error: 'not ready: redis unreachable',
          code: 'backend_unavailable',
          checks: { redis: 'timeout', keycloak: 'ok', wac_core: 'ok' },
        },
      },
    },
  },
  {
    id: 'getOpenApi',
    method: 'get',
    path: '/openapi.json',
    tag: 'docs',
    summary: 'This document',
    open: true,
    responses: {
      200: {
        description: 'The OpenAPI 3.1 document.',
        schema: {
          type: 'object',
          required: ['openapi', 'info', 'paths'],
          properties: {
            openapi: { type: 'string', pattern: '^3\\.1\\.' },
            info: { type: 'object' },
            paths: { type: 'object' },
          },
        },
      },
    },
  },
  {
    id: 'getDocs',
    method: 'get',
    path: '/docs',
    tag: 'docs',
    summary: 'This document as a web page',
    open: true,
    responses: {
      200: { description: 'An HTML page.', contentType: 'text/html', schema: { type: 'string' } },
    },
  },
  {
    id: 'getAdminLogin',
    method: 'get',
    path: '/admin/login',
    tag: 'admin',
    summary: 'The login page of the queue dashboard',
    description:
      'The dashboard, Bull Board, is at `/admin/queues`: a web page outside this document, ' +
      'opened with a bearer token or with the session this page opens. Signed in, this page ' +
      'offers to sign out.',
    open: true,
    responses: {
      200: { description: 'An HTML page.', contentType: 'text/html', schema: { type: 'string' } },
      503: '`queue_unavailable`: Redis, which holds the sessions, is not reachable.',
    },
  },
  {
    id: 'adminLogin',
    method: 'post',
    path: '/admin/login',
    tag: 'admin',
    summary: 'Open a dashboard session',
    description:
      'Takes an API token (static, or a Keycloak access token with the required role) and sets ' +
      'the session cookie `kitter_admin`: HttpOnly, SameSite=Strict, for `/admin`, at most 8 h ' +
      '(a Keycloak token: until it expires). The cookie holds a signed session id, not the token.',
    rawBody: {
      description: 'The login form.',
      content: {
        'application/x-www-form-urlencoded': {
          schema: toJsonSchema(loginForm),
          example: { token: 'one-of-the-api-tokens', next: '/admin/queues' },
        },
      },
    },
    open: true,
    responses: {
      303: {
        description: 'Signed in: on to `next` (a page of the dashboard).',
        contentType: 'text/html',
        schema: { type: 'string' },
        headers: {
          Location: { required: true, schema: { type: 'string' } },
          'Set-Cookie': { required: true, schema: { type: 'string' } },
        },
      },
      400: { description: 'No token: the form again.', contentType: 'text/html', schema: html },
      401: {
        description: 'A token not valid: the form again.',
        contentType: 'text/html',
        schema: html,
      },
      403: {
        description: 'A Keycloak token without the role: the form again.',
        contentType: 'text/html',
        schema: html,
      },
      503:
        '`queue_unavailable` (Redis is not reachable) or `backend_unavailable` (Keycloak, to ' +
        'check a Keycloak token).',
    },
  },
  {
    id: 'adminLogout',
    method: 'post',
    path: '/admin/logout',
    tag: 'admin',
    summary: 'End the dashboard session',
    open: true,
    responses: {
      303: {
        description: 'Signed out (or was not signed in): on to the login page.',
        contentType: 'text/html',
        schema: { type: 'string' },
        headers: { Location: { required: true, schema: { type: 'string' } } },
      },
      503: '`queue_unavailable`: Redis, which holds the sessions, is not reachable.',
    },
  },
  {
    id: 'listDomains',
    method: 'get',
    path: '/domains',
    tag: 'domains',
    summary: 'Domains, by exact name or part of it',
    description: 'Without a filter, every domain.',
    query: domainListQuery,
    notes: {
      name: 'The domain name, exactly: at most one domain.',
      nameContains: 'Part of the name, in any case.',
    },
    backends: true,
    responses: {
      200: {
        description: 'The domains found, maybe none.',
        schema: ref('DomainList'),
        example: { domains: [EXAMPLE_DOMAIN] },
      },
    },
  },
  {
    id: 'createDomain',
    method: 'post',
    path: '/domains',
    tag: 'domains',
    summary: 'Create a domain in wac-core',
    body: domainCreateBody,
    example: { domain: { domain: 'example.com', origins: ['/.*/'], enable_anonymous: false } },
    job: true,
    responses: {
      201: {
        description: 'Created.',
        schema: ref('DomainAnswer'),
        example: { domain: EXAMPLE_DOMAIN },
      },
      400: `${BAD_BODY} \`unknown_domain\`: the parent domain does not exist. ${REJECTED}`,
      409: '`conflict`: a domain of that name exists.',
    },
  },
  {
    id: 'getDomain',
    method: 'get',
    path: '/domains/{id}',
    tag: 'domains',
    summary: 'One domain',
    params: domainIdPath,
    notes: { id: 'The domain id given by wac-core.' },
    backends: true,
    responses: {
      200: {
        description: 'The domain.',
        schema: ref('DomainAnswer'),
        example: { domain: EXAMPLE_DOMAIN },
      },
      404: '`not_found`: no domain with that id.',
    },
  },
  {
    id: 'updateDomain',
    method: 'patch',
    path: '/domains/{id}',
    tag: 'domains',
    summary: 'Change some fields of a domain',
    description: 'The body is flat: the fields to change, and only those.',
    params: domainIdPath,
    notes: { id: 'The domain id given by wac-core.' },
    body: domainPatchSchema,
    example: { origins: ['https://app.example.com'], enable_anonymous: true },
    job: true,
    responses: {
      200: {
        description: 'Changed.',
        schema: ref('DomainAnswer'),
        example: { domain: EXAMPLE_DOMAIN },
      },
      400: `${BAD_BODY} ${REJECTED}`,
      404: '`not_found`: no domain with that id.',
      409: '`conflict`: another domain has that name.',
    },
  },
  {
    id: 'deleteDomain',
    method: 'delete',
    path: '/domains/{id}',
    tag: 'domains',
    summary: 'Delete a domain',
    params: domainIdPath,
    notes: { id: 'The domain id given by wac-core.' },
    job: true,
    responses: {
      204: { description: 'Deleted.' },
      404: '`not_found`: no domain with that id.',
      409: '`conflict`: the domain still has users or child domains.',
    },
  },
  {
    id: 'logoutDomain',
    method: 'post',
    path: '/domains/{id}/logout',
    tag: 'domains',
    summary: 'Log out every user of a domain',
    description:
      'A long job: answered 202 at once unless the client asks to wait (`Prefer: wait=N`). ' +
      'Its progress counts the users done of the total. Users deleted or created while it ' +
      'runs pass none over; the job fails with 409 `conflict` only when the list keeps ' +
      'moving under five walks in a row that find nobody left to log out.',
    params: domainIdPath,
    notes: { id: 'The domain id given by wac-core.' },
    job: true,
    responses: {
      200: {
        description: 'Every user of the domain is logged out (when the client waited).',
        schema: ref('LogoutCount'),
        example: { done: 42, total: 42 },
      },
      404: '`not_found`: no domain with that id.',
    },
  },
  {
    id: 'listUsers',
    method: 'get',
    path: '/users',
    tag: 'users',
    summary: 'Users, filtered and paged',
    description: 'Every filter given must match. `total` counts the matches on all pages.',
    query: userListQuery,
    notes: {
      email: 'Part of the email, or all of it with `exact=true`.',
      username: 'Part of the username, or all of it with `exact=true`.',
      exact: 'Match `username` and `email` whole.',
      phone_number: 'The phone number, exactly.',
      domain: 'The domain name, exactly.',
      email_verified: 'Whether the email is verified.',
      ...PAGING,
    },
    backends: true,
    responses: {
      200: {
        description: 'A page of users, maybe empty.',
        schema: ref('UserList'),
        example: { users: [EXAMPLE_USER], total: 1 },
      },
    },
  },
  {
    id: 'createUser',
    method: 'post',
    path: '/users',
    tag: 'users',
    summary: 'Create a user in Keycloak and wac-core',
    description:
      'Creates the Keycloak user, then the wac-core user, then its SIP mapping when ' +
      '`attributes.sip_mapping` is given. A job that fails for good undoes what it made.',
    body: userCreateBody,
    example: {
      user: {
        username: 'johndoe',
        email: 'john@example.com',
        first_name: 'John',
        last_name: 'Doe',
        credentials: { password: 'SecurePassword123!', temporary: false },
        attributes: {
          domain: 'example.com',
          phone_number: '+34612345678',
          capabilities: ['+chat', '+whiteboard'],
          sip_mapping: {
            username: 'sip_user',
            password: 'sip_password_123',
            sip_domain: 'example.com',
            sip_auth_proxy: 'sip:127.0.0.1:15060',
          },
        },
      },
    },
    job: true,
    responses: {
      201: { description: 'Created.', schema: ref('UserAnswer'), example: { user: EXAMPLE_USER } },
      400:
        `${BAD_BODY} \`unknown_domain\`: wac-core has no such domain; nothing is queued. ` +
        REJECTED,
      409: '`conflict`: Keycloak has a user with that username or email.',
    },
  },
  {
    id: 'getUser',
    method: 'get',
    path: '/users/{domain}/{username}',
    tag: 'users',
    summary: 'One user, from both systems',
    description: 'Answers the bare user, not wrapped (as the original kitter did).',
    params: userPath,
    notes: { domain: 'The domain name.', username: 'The username, in any case.' },
    backends: true,
    responses: {
      200: { description: 'The user.', schema: ref('User'), example: EXAMPLE_USER },
      404: '`not_found`: no such user in both Keycloak and wac-core.',
    },
  },
  {
    id: 'updateUser',
    method: 'patch',
    path: '/users/{id}',
    tag: 'users',
    summary: 'Change some fields of a user',
    description:
      'The body is flat: the fields to change, and only those; `null` removes a field. ' +
      '`sip_mapping: null` removes the SIP mapping. The deprecated `id` is ignored.',
    params: userIdPath,
    notes: { id: 'The Keycloak user id.' },
    body: userPatchSchema,
    example: { first_name: 'Johnny', attributes: { capabilities: ['+chat'] } },
    job: true,
    responses: {
      200: { description: 'Changed.', schema: ref('UserAnswer'), example: { user: EXAMPLE_USER } },
      400:
        `${BAD_BODY} \`unknown_domain\`: wac-core has no such domain; nothing is queued. ` +
        REJECTED,
      404: '`not_found`: no user with that id.',
      409: '`conflict`: Keycloak has another user with that username or email.',
    },
  },
  {
    id: 'deleteUser',
    method: 'delete',
    path: '/users/{id}',
    tag: 'users',
    summary: 'Delete a user from both systems, with its SIP mapping',
    params: userIdPath,
    notes: { id: 'The Keycloak user id.' },
    job: true,
    responses: {
      204: { description: 'Deleted.' },
      404: '`not_found`: no user with that id.',
    },
  },
  {
    id: 'logoutUser',
    method: 'post',
    path: '/users/{id}/logout',
    tag: 'users',
    summary: "End all the user's sessions",
    description: 'Access tokens already issued stay valid until they expire.',
    params: userIdPath,
    notes: { id: 'The Keycloak user id.' },
    job: true,
    responses: {
      204: { description: 'Logged out.' },
      404: '`not_found`: no user with that id.',
    },
  },
  {
    id: 'getJob',
    method: 'get',
    path: '/jobs/{id}',
    tag: 'jobs',
    summary: "A job's state, result or error",
    notes: { id: 'From the `Kitter-Job` header or the `Location` of a 202.' },
    responses: {
      200: { description: 'The job.', schema: ref('JobAnswer'), example: { job: EXAMPLE_JOB } },
      404: '`not_found`: no such job, or it was removed (after a day; a week when failed).',
    },
  },
  {
    id: 'listJobs',
    method: 'get',
    path: '/jobs',
    tag: 'jobs',
    summary: 'Jobs by state and type, paged',
    description:
      'Queue by queue, then `queued`, `running`, `succeeded`, `failed`; within a state the ' +
      'newest first. Finished jobs are kept a day (a week when failed). With `type`, every job ' +
      'in the states asked for is looked at, so narrow it with `state` on a busy queue.',
    query: jobListQuery,
    notes: {
      state:
        '`queued` (waiting, delayed for a retry or behind an earlier write), `running`, ' +
        '`succeeded` or `failed`.',
      type: 'The job type.',
      ...PAGING,
    },
    responses: {
      200: {
        description: 'A page of jobs, maybe empty.',
        schema: ref('JobList'),
        example: { jobs: [EXAMPLE_JOB], total: 1 },
      },
    },
  },
  {
    id: 'retryJob',
    method: 'post',
    path: '/jobs/{id}/retry',
    tag: 'jobs',
    summary: 'Run a failed job again',
    description:
      'Once the cause is fixed: the job is queued again with all its attempts. A job that ' +
      'carried passwords cannot be: they were removed when it failed, so send the request again.',
    notes: { id: 'The job id.' },
    responses: {
      202: {
        description: 'Queued again; follow it at `Location`.',
        schema: ref('JobAnswer'),
        example: { job: EXAMPLE_JOB },
        headers: {
          Location: { description: '`/jobs/{id}`', required: true, schema: { type: 'string' } },
        },
      },
      404: '`not_found`: no such job.',
      409: '`conflict`: the job has not failed, or its passwords were removed.',
    },
  },
  {
    id: 'removeJob',
    method: 'delete',
    path: '/jobs/{id}',
    tag: 'jobs',
    summary: 'Remove a job that is not running',
    description:
      'A queued job is not carried out; a finished one is forgotten. Jobs queued behind it on ' +
      'the same user or domain no longer wait for it.',
    notes: { id: 'The job id.' },
    responses: {
      204: { description: 'Removed.' },
      404: '`not_found`: no such job.',
      409: '`conflict`: the job is running; remove it once it has ended.',
    },
  },
  {
    id: 'listQueues',
    method: 'get',
    path: '/queues',
    tag: 'queues',
    summary: 'Every queue: jobs by state, jobs ended per minute, oldest wait, workers',
    description:
      'Read from Redis when asked, so every API process answers the same. The per-minute ' +
      'figures count jobs that ended in any process.',
    responses: {
      200: {
        description: 'The queues `provisioning`, `logout` and `imports`.',
        schema: ref('QueueList'),
        example: { queues: [EXAMPLE_QUEUE] },
      },
    },
  },
  {
    id: 'pauseQueue',
    method: 'post',
    path: '/queues/{name}/pause',
    tag: 'queues',
    summary: 'Stop workers taking jobs of a queue',
    description:
      'In every process. Running jobs finish; new jobs are still accepted, and wait. Writes ' +
      'then answer 202 once they have waited their time.',
    notes: { name: '`provisioning`, `logout` or `imports`.' },
    responses: {
      200: {
        description: 'Paused.',
        schema: ref('QueueAnswer'),
        example: { queue: { ...EXAMPLE_QUEUE, paused: true } },
      },
      404: '`not_found`: no such queue.',
    },
  },
  {
    id: 'resumeQueue',
    method: 'post',
    path: '/queues/{name}/resume',
    tag: 'queues',
    summary: 'Let workers take jobs of a paused queue again',
    notes: { name: '`provisioning`, `logout` or `imports`.' },
    responses: {
      200: {
        description: 'Resumed.',
        schema: ref('QueueAnswer'),
        example: { queue: EXAMPLE_QUEUE },
      },
      404: '`not_found`: no such queue.',
    },
  },
  {
    id: 'getMetrics',
    method: 'get',
    path: '/metrics',
    tag: 'queues',
    summary: 'Prometheus metrics',
    description:
      'Queue gauges (`kitter_queue_*`) are read from Redis at each scrape, the same from every ' +
      'process. Counters and histograms of jobs, backend requests and HTTP requests count what ' +
      'this process did: scrape every process (a `worker` process serves them on ' +
      '`KITTER_METRICS_PORT`). Also the process metrics of prom-client.',
    responses: {
      200: {
        description: 'The Prometheus text format.',
        contentType: 'text/plain',
        schema: { type: 'string' },
      },
    },
  },
  {
    id: 'listHtable',
    method: 'get',
    path: '/htable',
    tag: 'htable',
    summary: 'Caller-id entries, filtered and paged',
    description: 'Served only when the operator sets `KITTER_HTABLE_ENABLED`.',
    when: htableEnabled,
    query: htableListQuery,
    notes: {
      nameContains: 'Part of the name.',
      valueContains: 'Part of the value.',
      ...PAGING,
    },
    backends: true,
    responses: {
      200: {
        description: 'A page of entries, maybe empty.',
        schema: ref('HtableList'),
        example: { entries: [{ name: '+34612345678', value: 'John Doe' }], total: 1 },
      },
    },
  },
  {
    id: 'createHtableEntry',
    method: 'post',
    path: '/htable',
    tag: 'htable',
    summary: 'Add a caller-id entry',
    description: 'Served only when the operator sets `KITTER_HTABLE_ENABLED`.',
    when: htableEnabled,
    body: htableCreateBody,
    example: { name: '+34612345678', value: 'John Doe' },
    job: true,
    responses: {
      201: {
        description: 'Added; the entry, not wrapped.',
        schema: ref('HtableEntry'),
        example: { name: '+34612345678', value: 'John Doe' },
      },
      409: '`conflict`: an entry of that name exists.',
    },
  },
  {
    id: 'deleteHtableEntry',
    method: 'delete',
    path: '/htable/{name}',
    tag: 'htable',
    summary: 'Remove a caller-id entry',
    description: 'Served only when the operator sets `KITTER_HTABLE_ENABLED`.',
    when: htableEnabled,
    params: htableNamePath,
    notes: { name: 'The entry name.' },
    job: true,
    responses: {
      204: { description: 'Removed.' },
      404: '`not_found`: no entry of that name.',
    },
  },
  {
    id: 'createImport',
    method: 'post',
    path: '/imports',
    tag: 'imports',
    summary: 'Import users in bulk from a CSV file',
    description:
      'The file is checked whole first: a line that is not CSV, an unknown column, or no ' +
      '`username` or `domain` column refuses it (400) before any row is queued. Then each row ' +
      'is validated like `POST /users`; invalid rows are reported, valid ones are queued as ' +
      '`user.create` jobs behind single requests. Delimiter (`,` `;` tab), byte order mark and ' +
      'line ends are detected. Columns: ' +
      `${COLUMNS.join(', ')} (\`capabilities\` separated by \`|\`). The same ` +
      '`Idempotency-Key` names the same import: the same file sent again answers it (with ' +
      '`Idempotent-Replayed: true`), and goes on where it stopped if the first upload was cut ' +
      "off, queuing no row twice; another file, or a dry run's key on the real import, is 409.",
    query: importQuery,
    idempotent: true,
    notes: { dry_run: 'Validate and report only; nothing is queued.' },
    rawBody: {
      description:
        'The CSV file as the body, or the multipart field `file`; at most ' +
        '`KITTER_IMPORT_MAX_BYTES` (256 MB unless set, counted decompressed), else 413. ' +
        'Its text is UTF-8, UTF-16 with its byte order mark, or in the `charset` its media ' +
        'type names (`text/csv; charset=windows-1252`); a file that is not is 400, naming ' +
        'the line, and a charset kitter cannot read 415.',
      content: {
        'text/csv': {
          schema: { type: 'string' },
          example: 'username;email;domain\nada;ada@example.com;example.com\n',
        },
        'multipart/form-data': {
          schema: {
            type: 'object',
            required: ['file'],
            properties: { file: { type: 'string', contentMediaType: 'text/csv' } },
          },
        },
      },
    },
    responses: {
      202: {
        description: 'The file was read: the import, with its counts so far.',
        schema: ref('ImportAnswer'),
        example: { import: EXAMPLE_IMPORT },
        headers: {
          Location: { description: '/imports/{id}', schema: { type: 'string' } },
          'Idempotent-Replayed': {
            description: '`true` when the same file was sent before under the same key.',
            schema: { type: 'string', enum: ['true'] },
          },
        },
      },
      409:
        '`conflict`: the `Idempotency-Key` was used before with another file, or with ' +
        'another `dry_run`.',
    },
  },
  {
    id: 'listImports',
    method: 'get',
    path: '/imports',
    tag: 'imports',
    summary: 'The 50 most recent imports',
    responses: {
      200: {
        description: 'Newest first.',
        schema: ref('ImportList'),
        example: { imports: [EXAMPLE_IMPORT] },
      },
    },
  },
  {
    id: 'getImport',
    method: 'get',
    path: '/imports/{id}',
    tag: 'imports',
    summary: "An import's state and counts",
    params: importIdPath,
    responses: {
      200: {
        description: 'The import.',
        schema: ref('ImportAnswer'),
        example: { import: EXAMPLE_IMPORT },
      },
      404: '`not_found`: no such import (they are kept a week after they end).',
    },
  },
  {
    id: 'getImportErrors',
    method: 'get',
    path: '/imports/{id}/errors.csv',
    tag: 'imports',
    summary: 'Every rejected or failed row, ready to fix and import again',
    description:
      'A CSV file: `row`, the columns of the imported file except the passwords (named as ' +
      'the file named them), and `reason`, separated as the file was (`,`, `;` or tab, CRLF ' +
      'or LF), in UTF-8 with its byte order mark. ' +
      'Drop `row` and `reason`, fix the rows (and add passwords back), and import it again.',
    params: importIdPath,
    responses: {
      200: {
        description: 'The rows, in row order.',
        contentType: 'text/csv',
        schema: { type: 'string' },
        example:
          'row,username,email,domain,reason\n' +
          '17,ada,not-an-email,example.com,email: must be a valid email\n',
      },
      404: '`not_found`: no such import.',
    },
  },
  {
    id: 'cancelImport',
    method: 'delete',
    path: '/imports/{id}',
    tag: 'imports',
    summary: 'Cancel an import',
    description:
      'Cancelled at once: rows not started are dropped (counted as `cancelled`) by a job that ' +
      'clears them from the queue, and by workers that reach one first; rows running end and ' +
      'count as they end; rows done stay done. Sent again, it answers the same.',
    params: importIdPath,
    responses: {
      200: {
        description: 'Cancelled; `cancelled` grows as the rows not started are dropped.',
        schema: ref('ImportAnswer'),
        example: { import: { ...EXAMPLE_IMPORT, state: 'cancelled' } },
        headers: {
          'Kitter-Job': {
            description: 'The job that clears the rows not started; read it at `/jobs/{id}`.',
            schema: { type: 'string' },
          },
        },
      },
      404: '`not_found`: no such import.',
      409: '`conflict`: the import has finished; nothing is left to cancel.',
    },
  },
  {
    id: 'reconcileDomain',
    method: 'get',
    path: '/reconcile',
    tag: 'reconcile',
    summary: "Compare one domain's users in Keycloak and wac-core",
    description:
      'Read-only: lists the users that exist in only one of the two systems, or differ in ' +
      'username, email or domain, and says which of them `kitter reconcile --fix` repairs. ' +
      'Nothing is repaired through the API. Reads every user of the domain, so a large domain ' +
      'takes a while.',
    query: reconcileQuery,
    notes: { domain: 'The domain name, exactly.' },
    backends: true,
    responses: {
      200: {
        description: 'What differs; an empty `drift` when nothing does.',
        schema: ref('ReconcileReport'),
        example: EXAMPLE_RECONCILE_REPORT,
      },
      404: '`not_found`: wac-core has no domain of that name.',
    },
  },
];

const description = `kitter provisions users and domains into Keycloak and wac-core through a queue.

JSON in and out, \`snake_case\` keys; a request body may come compressed \
(\`Content-Encoding\`: \`gzip\`, \`deflate\` or \`br\`; 415 for another). Every endpoint but \
\`/health/*\`, \`/openapi.json\`, \`/docs\` and the dashboard's login needs \
\`Authorization: Bearer <token>\`: one of the service's API tokens, or a Keycloak access token \
of the realm that holds the role kitter requires (401 without a valid token, 403 without the \
role). The queue dashboard, \`/admin/queues\`, also takes \
the session that \`/admin/login\` opens.

Every answer that is not 2xx has the body \`{"error": "<sentence>", "code": "<stable word>"}\`, \
with \`details\` (\`[{path, message}]\`) naming every invalid field. A path that exists answers \
405 to a method it does not take; an unknown path answers 404.

Writes are jobs. By default the API waits for the job (10 s unless configured) and answers as a \
synchronous API would, with the header \`Kitter-Job: <id>\`. A job not done by then, or any \
write sent with \`Prefer: respond-async\`, is answered 202 with \`Location: /jobs/<id>\` and \
\`{"job": Job}\`; \`Prefer: wait=N\` waits up to N seconds (60 at most). A domain logout, a \
long job, answers 202 at once unless asked to wait. \`Idempotency-Key\` on a write makes a repeat \
within 24 h answer the same job instead of doing the work twice.

Limits: a JSON body of at most ${BODY_LIMIT} (413 above); a body must be \`application/json\` \
(415 otherwise); lists page with \`paginate[max]\` (at most ${MAX_PAGE}) and \`paginate[page]\` \
(from 0).

Each answer carries \`X-Request-Id\` (the caller's, when sane), which the logs name too.`;

// src/api/ and, once built, dist/api/ both sit two folders below the package's root.
const { version } = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

const built = new WeakMap<Config, OpenApiDocument>();

/** The document of what this configuration serves, built once. */
export function openApiDocument(config: Config): OpenApiDocument {
  let doc = built.get(config);
  if (!doc) {
    doc = buildDocument({ title: 'kitter', version, description }, operations, config);
    built.set(config, doc);
  }
  return doc;
}
