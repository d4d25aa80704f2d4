import Joi from 'joi';

/** Where the demo's emulated Keycloak client takes its secret from when none is configured. */
export const DEMO_CLIENT_SECRET = 'kitter-demo-secret';
export const DEMO_API_TOKEN = 'kitter-demo-token';
/**
 * A fixed key so that jobs queued by one demo run can still be read by the next; it protects
 * nothing, which is why only the demo may fall back to it.
 */
export const DEMO_SECRET_KEY = 'kitter-demo-only-secret-key-do-not-use-in-production';

export type Mode = 'api' | 'worker' | 'all' | 'demo' | 'reconcile';

export interface HostPort {
  host: string;
  port: number;
}

/** Where Redis is: exactly one of a single server, a Sentinel-watched primary, or a Cluster. */
export type RedisSettings =
  | { kind: 'single'; url: string; password?: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; password?: string }
  | { kind: 'cluster'; nodes: HostPort[]; password?: string };

export interface Config {
  mode: Mode;
  port: number;
  host: string;
  redis: RedisSettings;
  /** REDIS_URL, for tools and tests that reach a single Redis; '' with Sentinel or Cluster. */
  redisUrl: string;
  /**
   * Prefix of every key kitter writes, so several installations can share one Redis. On a
   * Cluster it is a hash tag (`{kitter}`): BullMQ's scripts touch many keys of a queue at once,
   * and they must all live in one slot.
   */
  queuePrefix: string;
  keycloak: {
    url: string;
    realm: string;
    clientId: string;
    clientSecret: string;
  };
  wacCoreUrl: string;
  apiTokens: string[];
  /** The realm or client role a Keycloak access token needs to use the API. */
  requiredRole: string;
  /** Whether the caller-id table (`/htable`) is served; 404 otherwise. */
  htableEnabled: boolean;
  syncTimeoutMs: number;
  /** Key material for encrypting secrets in job data. */
  secretKey: string;
  worker: {
    concurrency: number;
    logoutConcurrency: number;
    /** Users one domain logout logs out at once. */
    logoutFanOut: number;
    attempts: number;
    backoffMs: number;
    lockMs: number;
    ratePerSecond: number;
    /** How long SIGTERM waits for active jobs before handing them back to the queue. */
    shutdownDeadlineMs: number;
    /** How long finished jobs stay answerable, in seconds. */
    keepSucceededS: number;
    keepFailedS: number;
  };
  backendTimeoutMs: number;
  /** The largest import file taken, in bytes. */
  importMaxBytes: number;
  /** Where a `worker` process serves /metrics; none when unset (api and all use PORT). */
  metricsPort?: number;
  logLevel: string;
}

type Env = Record<string, string | undefined>;

/** `host:port[,host:port...]`; a host is a name or an IPv4 address, or an IPv6 one in brackets. */
const HOST_PORT = String.raw`\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}\s*`;
const HOST_PORT_LIST = new RegExp(`^${HOST_PORT}(,${HOST_PORT})*$`);

const schema = Joi.object({
  PORT: Joi.number().integer().min(0).max(65535).default(3000),
  HOST: Joi.string(),
  REDIS_URL: Joi.string()
    .uri({ scheme: ['redis', 'rediss'] })
    .default('redis://127.0.0.1:6379'),
  REDIS_SENTINELS: Joi.string()
    .pattern(HOST_PORT_LIST)
    .messages({ 'string.pattern.base': '{{#label}} must be a comma-separated list of host:port' }),
  REDIS_SENTINEL_NAME: Joi.string(),
  REDIS_CLUSTER_NODES: Joi.string()
    .pattern(HOST_PORT_LIST)
    .messages({ 'string.pattern.base': '{{#label}} must be a comma-separated list of host:port' }),
  REDIS_PASSWORD: Joi.string(),
  KITTER_QUEUE_PREFIX: Joi.string()
    .pattern(/^[A-Za-z0-9_{}-]+$/)
    .default('kitter'),
  KEYCLOAK_URL: Joi.string()
    .uri({ scheme: ['http', 'https'] })
    .default('http://127.0.0.1:8080'),
  KEYCLOAK_REALM: Joi.string().default('quobis'),
  KEYCLOAK_CLIENT_ID: Joi.string().default('kitter'),
  KEYCLOAK_CLIENT_SECRET: Joi.string(),
  WAC_CORE_URL: Joi.string()
    .uri({ scheme: ['http', 'https'] })
    .default('http://127.0.0.1:8001/sapi'),
  KITTER_API_TOKENS: Joi.string(),
  KITTER_REQUIRED_ROLE: Joi.string()
    .max(255)
    .pattern(/^\S+$/)
    .messages({ 'string.pattern.base': '{{#label}} must be one role name, without spaces' })
    .default('kitter-admin'),
  KITTER_HTABLE_ENABLED: Joi.boolean().messages({
    'boolean.base': '{{#label}} must be true or false',
  }),
  KITTER_SYNC_TIMEOUT_MS: Joi.number().integer().min(0).max(300_000).default(10_000),
  KITTER_SECRET_KEY: Joi.string().min(16),
  KITTER_WORKER_CONCURRENCY: Joi.number().integer().min(1).max(1000).default(20),
  KITTER_LOGOUT_CONCURRENCY: Joi.number().integer().min(1).max(100).default(2),
  KITTER_LOGOUT_FAN_OUT: Joi.number().integer().min(1).max(200).default(10),
  KITTER_JOB_ATTEMPTS: Joi.number().integer().min(1).max(100).default(8),
  KITTER_JOB_BACKOFF_MS: Joi.number().integer().min(1).max(600_000).default(1000),
  KITTER_JOB_LOCK_MS: Joi.number().integer().min(1000).max(600_000).default(30_000),
  KITTER_RATE_LIMIT: Joi.number().integer().min(0).max(100_000).default(0),
  KITTER_SHUTDOWN_DEADLINE_MS: Joi.number().integer().min(0).max(3_600_000).default(25_000),
  KITTER_KEEP_SUCCEEDED_S: Joi.number()
    .integer()
    .min(60)
    .max(90 * 86400)
    .default(86400),
  KITTER_KEEP_FAILED_S: Joi.number()
    .integer()
    .min(60)
    .max(90 * 86400)
    .default(7 * 86400),
  KITTER_IMPORT_MAX_BYTES: Joi.number()
    .integer()
    .min(1024)
    .max(16 * 1024 ** 3)
    .default(256 * 1024 ** 2),
  KITTER_BACKEND_TIMEOUT_MS: Joi.number().integer().min(100).max(120_000).default(10_000),
  KITTER_METRICS_PORT: Joi.number().integer().min(0).max(65535),
  LOG_LEVEL: Joi.string()
    .valid('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')
    .default('info'),
}).unknown(true);

/** Every variable kitter reads, for checks of deployment files against this module. */
export const VARIABLES: readonly string[] = Object.keys(schema.describe().keys ?? {});

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the configuration from the environment. Every problem is reported at once; outside
 * the demo, secrets have no defaults.
 */
export function loadConfig(mode: Mode, env: Env = process.env): Config {
  const { value, error } = schema.validate(env, { abortEarly: false, convert: true });
  const problems = error ? error.details.map(describeProblem) : [];
  const demo = mode === 'demo';
  // Reconciliation only reads and writes the two backends: no queue secrets, no API.
  const reconcile = mode === 'reconcile';

  const clientSecret = value.KEYCLOAK_CLIENT_SECRET ?? (demo ? DEMO_CLIENT_SECRET : undefined);
  const secretKey = value.KITTER_SECRET_KEY ?? (demo ? DEMO_SECRET_KEY : undefined);
  const apiTokens = splitList(value.KITTER_API_TOKENS ?? (demo ? DEMO_API_TOKEN : ''));

  if (clientSecret === undefined) {
    problems.push('KEYCLOAK_CLIENT_SECRET is required (the kitter client secret in Keycloak)');
  }
  if (secretKey === undefined && !reconcile) {
    problems.push('KITTER_SECRET_KEY is required (16+ characters; encrypts secrets in Redis)');
  }
  if (apiTokens.length === 0 && mode !== 'worker' && !reconcile) {
    problems.push('KITTER_API_TOKENS is required (comma-separated bearer tokens)');
  }
  if (apiTokens.length === 0 && mode === 'worker' && value.KITTER_METRICS_PORT !== undefined) {
    problems.push('KITTER_API_TOKENS is required with KITTER_METRICS_PORT (the scraper uses one)');
  }
  const short = apiTokens.filter((token) => token.length < 16 && !demo);
  if (short.length > 0) problems.push('KITTER_API_TOKENS: every token needs 16+ characters');

  const redis = redisSettings(env, value, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    mode,
    port: value.PORT,
    // The demo's token is in the README: its API stays on this machine unless HOST says.
    host: value.HOST ?? (demo ? '127.0.0.1' : '0.0.0.0'),
    redis,
    redisUrl: redis.kind === 'single' ? redis.url : '',
    queuePrefix:
      redis.kind === 'cluster' ? hashTagged(value.KITTER_QUEUE_PREFIX) : value.KITTER_QUEUE_PREFIX,
    keycloak: {
      url: stripSlash(value.KEYCLOAK_URL),
      realm: value.KEYCLOAK_REALM,
      clientId: value.KEYCLOAK_CLIENT_ID,
      clientSecret: clientSecret!,
    },
    wacCoreUrl: stripSlash(value.WAC_CORE_URL),
    apiTokens,
    requiredRole: value.KITTER_REQUIRED_ROLE,
    // Off unless the operator turns it on; the demo shows every endpoint.
    htableEnabled: value.KITTER_HTABLE_ENABLED ?? demo,
    syncTimeoutMs: value.KITTER_SYNC_TIMEOUT_MS,
    // Empty only in reconcile mode, which opens no job data.
    secretKey: secretKey ?? '',
    worker: {
      concurrency: value.KITTER_WORKER_CONCURRENCY,
      logoutConcurrency: value.KITTER_LOGOUT_CONCURRENCY,
      logoutFanOut: value.KITTER_LOGOUT_FAN_OUT,
      attempts: value.KITTER_JOB_ATTEMPTS,
      backoffMs: value.KITTER_JOB_BACKOFF_MS,
      lockMs: value.KITTER_JOB_LOCK_MS,
      ratePerSecond: value.KITTER_RATE_LIMIT,
      shutdownDeadlineMs: value.KITTER_SHUTDOWN_DEADLINE_MS,
      keepSucceededS: value.KITTER_KEEP_SUCCEEDED_S,
      keepFailedS: value.KITTER_KEEP_FAILED_S,
    },
    backendTimeoutMs: value.KITTER_BACKEND_TIMEOUT_MS,
    importMaxBytes: value.KITTER_IMPORT_MAX_BYTES,
    metricsPort: value.KITTER_METRICS_PORT,
    logLevel: value.LOG_LEVEL,
  };
}

const TOPOLOGIES = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'];

/**
 * The one Redis topology the environment names. REDIS_URL has a default, so it counts as
 * chosen only when set; two chosen at once is a mistake worth stopping for, not a precedence.
 * Problems are added to `problems`; the settings answered then are never used.
 */
function redisSettings(env: Env, value: Record<string, any>, problems: string[]): RedisSettings {
  const chosen = TOPOLOGIES.filter((name) => env[name] !== undefined);
  if (chosen.length > 1) {
    problems.push(
      `${chosen.join(' and ')} are ${chosen.length === 2 ? 'both' : 'all'} set: set only one ` +
        'of REDIS_URL (one server), REDIS_SENTINELS (with REDIS_SENTINEL_NAME) and ' +
        'REDIS_CLUSTER_NODES',
    );
  }

  const password = value.REDIS_PASSWORD === undefined ? {} : { password: value.REDIS_PASSWORD };
  const name: string | undefined = value.REDIS_SENTINEL_NAME;
  if (chosen[0] === 'REDIS_SENTINELS') {
    if (name === undefined) {
      problems.push("REDIS_SENTINEL_NAME is required with REDIS_SENTINELS (the primary's name)");
    }
    const sentinels = hostPorts(value.REDIS_SENTINELS, 'REDIS_SENTINELS', problems);
    return { kind: 'sentinel', sentinels, name: name ?? '', ...password };
  }

  if (name !== undefined) problems.push('REDIS_SENTINEL_NAME is set but REDIS_SENTINELS is not');
  if (chosen[0] === 'REDIS_CLUSTER_NODES') {
    const nodes = hostPorts(value.REDIS_CLUSTER_NODES, 'REDIS_CLUSTER_NODES', problems);
    return { kind: 'cluster', nodes, ...password };
  }
  return { kind: 'single', url: value.REDIS_URL, ...password };
}

function hostPorts(text: string | undefined, name: string, problems: string[]): HostPort[] {
  // A malformed list was reported by the schema already.
  if (text === undefined || !HOST_PORT_LIST.test(text)) return [];

  return splitList(text).map((item) => {
    const colon = item.lastIndexOf(':');
    const host = item.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(item.slice(colon + 1));
    if (port < 1 || port > 65535) problems.push(`${name}: ${item} has no valid port (1–65535)`);
    return { host, port };
  });
}

/** `kitter` becomes `{kitter}`; a prefix that has a hash tag already keeps it. */
function hashTagged(prefix: string): string {
  return /\{[^{}]+\}/.test(prefix) ? prefix : `{${prefix}}`;
}

function describeProblem(detail: Joi.ValidationErrorItem): string {
  const name = String(detail.path[0]);
  // Joi quotes the key in its message; say it once, in front, as the variable's name.
  const message = detail.message.replace(/^"[^"]*"\s*/, '');
  return `${name} ${message}`;
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
