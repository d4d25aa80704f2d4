import { ConfigError, loadConfig, type Config, type Mode } from './config.js';
import type { RunningEmulators } from './emulators/index.js';
import { createLogger } from './logger.js';
import { runImport } from './imports/cli.js';
import { runReconcile } from './reconcile/cli.js';
import { describeRedis, probeRedis } from './redis.js';
import { startService } from './service.js';
import { checkStartup } from './startup-checks.js';

const MODES: Record<string, Mode> = { api: 'api', worker: 'worker', all: 'all', demo: 'demo' };

const USAGE =
  'usage: kitter <api|worker|all|demo>, or kitter reconcile [--domain NAME] [--fix] [--json], ' +
  'or kitter import FILE [--url URL] [--token TOKEN] [--key KEY] [--charset NAME] [--dry-run] ' +
  '[--wait], ' +
  'or kitter emulate-wac-core';

async function main(argv: string[]): Promise<number> {
  // A one-off run against the two backends: no Redis, no API, no workers.
  if (argv[0] === 'reconcile') return runReconcile(argv.slice(1));
  // A client of a running kitter: uploads a file and follows the import.
  if (argv[0] === 'import') return runImport(argv.slice(1));
  // docker-compose.yml's stand-in for wac-core; loaded only when asked for, like the demo's.
  if (argv[0] === 'emulate-wac-core') {
    return (await import('./emulators/wac-core-alone.js')).runWacCoreEmulatorAlone();
  }

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

  const redisProblem = await probeRedis(config.redis);
  if (redisProblem) {
    console.error(
      `kitter: Redis is not reachable at ${describeRedis(config.redis)}: ${redisProblem}`,
    );
    return 1;
  }

  const logger = createLogger(config.logLevel);
  // The emulators are loaded only for the demo; production modes never import them.
  const emulators =
    mode === 'demo'
      ? await (await import('./emulators/index.js')).startEmulators(config)
      : undefined;

  // The demo's Keycloak is up only now, so the checks come after the emulators.
  const { problems, warnings } = await checkStartup(config);
  for (const warning of warnings) console.error(`kitter: warning: ${warning}`);
  if (problems.length > 0) {
    for (const problem of problems) console.error(`kitter: ${problem}`);
    await emulators?.close();
    return 1;
  }

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
  exitSoon(0);
  return 0;
}

/**
 * How long a service process may outlive its shutdown: what is left then is a connection to a
 * Redis that is down, which BullMQ keeps trying to reach whatever it is told (see `service.ts`).
 * Only the service modes: the commands end when their output is written.
 */
const EXIT_GRACE_MS = 2_000;

function exitSoon(code: number): void {
  setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
}

function printDemoBanner(config: Config, apiUrl: string, emulators: RunningEmulators): void {
  const token = config.apiTokens[0];
  const lines = [
    'kitter demo is running (Keycloak and wac-core are emulated in this process)',
    `  API:                ${apiUrl}`,
    `  API token:          ${token}`,
    `  Keycloak emulator:  ${emulators.keycloak.url} (realm ${config.keycloak.realm}, ` +
      `client ${config.keycloak.clientId} / ${config.keycloak.clientSecret})`,
    `  wac-core emulator:  ${emulators.wac.baseUrl}`,
    `  Redis:              ${describeRedis(config.redis)}`,
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
    const { code, port } = err as { code?: string; port?: number };
    if (code === 'EADDRINUSE') {
      console.error(
        `kitter: port ${port} is taken by another program: move the API with PORT, and the ` +
          "demo's emulators with KEYCLOAK_URL and WAC_CORE_URL (README, Modes)",
      );
    }
    process.exitCode = 1;
    // A service that failed as it started (its port taken, say) may hold connections open.
    exitSoon(1);
  },
);
