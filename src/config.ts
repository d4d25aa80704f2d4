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

export interface Config {
  mode: Mode;
  port: number;
  host: string;
  redisUrl: string;
  /** Prefix of every BullMQ key, so several kitter installations can share one Redis. */
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
  logLevel: string;
}

type Env = Record<string, string | undefined>;

const schema = Joi.object({
  PORT: Joi.number().integer().min(0).max(65535).default(3000),
  HOST: Joi.string().default('0.0.0.0'),
  REDIS_URL: Joi.string()
    .uri({ scheme: ['redis', 'rediss'] })
    .default('redis://127.0.0.1:6379'),
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
  KITTER_HTABLE_ENABLED: Joi.boolean()
    .default(false)
    .messages({ 'boolean.base': '{{#label}} must be true or false' }),
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
  KITTER_BACKEND_TIMEOUT_MS: Joi.number().integer().min(100).max(120_000).default(10_000),
  LOG_LEVEL: Joi.string()
    .valid('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')
    .default('info'),
}).unknown(true);

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
  const short = apiTokens.filter((token) => token.length < 16 && !demo);
  if (short.length > 0) problems.push('KITTER_API_TOKENS: every token needs 16+ characters');

  if (problems.length > 0) throw new ConfigError(problems);

  return {
    mode,
    port: value.PORT,
    host: value.HOST,
    redisUrl: value.REDIS_URL,
    queuePrefix: value.KITTER_QUEUE_PREFIX,
    keycloak: {
      url: stripSlash(value.KEYCLOAK_URL),
      realm: value.KEYCLOAK_REALM,
      clientId: value.KEYCLOAK_CLIENT_ID,
      clientSecret: clientSecret!,
    },
    wacCoreUrl: stripSlash(value.WAC_CORE_URL),
    apiTokens,
    requiredRole: value.KITTER_REQUIRED_ROLE,
    htableEnabled: value.KITTER_HTABLE_ENABLED,
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
    logLevel: value.LOG_LEVEL,
  };
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
