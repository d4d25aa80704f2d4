import { Redis } from 'ioredis';

import { ConfigError, loadConfig, type Config, type Mode } from './config.js';
import type { RunningEmulators } from './emulators/index.js';
import { createLogger } from './logger.js';
import { runReconcile } from './reconcile/cli.js';
import { startService } from './service.js';

const MODES: Record<string, Mode> = { api: 'api', worker: 'worker', all: 'all', demo: 'demo' };

const USAGE =
  'usage: kitter <api|worker|all|demo>, or kitter reconcile [--domain NAME] [--fix] [--json]';

async function main(argv: string[]): Promise<number> {
  // A one-off run against the two backends: no Redis, no API, no workers.
  if (argv[0] === 'reconcile') return runReconcile(argv.slice(1));

  const mode = MODES[argv[0] ?? ''];
  if (!mode) {
    console.error(USAGE);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(mode);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) console.error(`kitter: ${problem}`);
    return 1;
  }

  const redisProblem = await probeRedis(config.redisUrl);
  if (redisProblem) {
    console.error(`kitter: Redis is not reachable at ${safeUrl(config.redisUrl)}: ${redisProblem}`);
    return 1;
  }

  const logger = createLogger(config.logLevel);
  // The emulators are loaded only for the demo; production modes never import them.
  const emulators =
    mode === 'demo'
      ? await (await import('./emulators/index.js')).startEmulators(config)
      : undefined;
  const service = await startService(config, logger, {
    api: mode !== 'worker',
    worker: mode !== 'api',
  });

  if (emulators) printDemoBanner(config, service.url!, emulators);
  else logger.info({ mode, url: service.url }, 'kitter started');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });

  await service.close();
  await emulators?.close();
  return 0;
}

/** Answers why Redis cannot be used, or undefined when it answers PING. */
async function probeRedis(url: string): Promise<string | undefined> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 3_000,
  });
  // connect() only says "Connection is closed"; the error event says why.
  let cause: Error | undefined;
  redis.on('error', (err: Error) => (cause ??= err));
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (err) {
    return (cause ?? (err as Error)).message;
  } finally {
    redis.disconnect();
  }
}

function safeUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

function printDemoBanner(config: Config, apiUrl: string, emulators: RunningEmulators): void {
  const token = config.apiTokens[0];
  const lines = [
    'kitter demo is running (Keycloak and wac-core are emulated in this process)',
    `  API:                ${apiUrl}`,
    `  API token:          ${token}`,
    `  Keycloak emulator:  ${emulators.keycloak.url} (realm ${config.keycloak.realm})`,
    `  wac-core emulator:  ${emulators.wac.baseUrl}`,
    `  Redis:              ${safeUrl(config.redisUrl)}`,
    '',
    `  try: curl -H 'Authorization: Bearer ${token}' ${apiUrl}/domains`,
    '  stop with Ctrl-C',
  ];
  console.log(lines.join('\n'));
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`kitter: ${(err as Error).message}`);
    process.exitCode = 1;
  },
);
