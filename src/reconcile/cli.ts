import { KeycloakClient } from '../clients/keycloak.js';
import { TokenSource } from '../clients/token-source.js';
import { WacCoreClient } from '../clients/wac-core.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { ApiError } from '../errors.js';
import { createLogger } from '../logger.js';
import { reconcile, type ReconcileDeps } from './reconcile.js';
import { summarize } from './report.js';

export const RECONCILE_USAGE = 'usage: kitter reconcile [--domain NAME] [--fix] [--json]';

interface Arguments {
  domain?: string;
  fix: boolean;
  json: boolean;
}

/**
 * `kitter reconcile`: compares Keycloak and wac-core, prints the report, and answers the exit
 * status: 0 when no drift is left, 1 when some is (or the run could not finish), 2 for a usage
 * error or an unknown domain.
 */
export async function runReconcile(argv: string[], env = process.env): Promise<number> {
  const args = parseArguments(argv);
  if (typeof args === 'string') {
    console.error(`kitter: ${args}\n${RECONCILE_USAGE}`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig('reconcile', env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) console.error(`kitter: ${problem}`);
    return 1;
  }

  // Log lines go to stderr: stdout carries the report, which `--json` makes machine-read. The
  // summary says what was done, so only warnings are logged unless LOG_LEVEL asks for more.
  const logger = createLogger(env.LOG_LEVEL ? config.logLevel : 'warn', process.stderr);
  const clients = clientsOf(config);
  try {
    const report = await reconcile({ ...clients, logger }, { domain: args.domain, fix: args.fix });
    console.log(args.json ? JSON.stringify(report, null, 2) : summarize(report, args.fix));
    return report.left.length === 0 ? 0 : 1;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'not_found') {
      console.error(`kitter: ${err.message}`);
      return 2;
    }
    console.error(`kitter: reconcile stopped: ${(err as Error).message}`);
    return 1;
  } finally {
    await clients.wac.close();
  }
}

/** The two backend clients, as the service builds them. */
export function clientsOf(config: Config): Omit<ReconcileDeps, 'logger'> {
  const timeoutMs = config.backendTimeoutMs;
  const tokens = new TokenSource({ ...config.keycloak, timeoutMs });
  return {
    keycloak: new KeycloakClient(tokens, { ...config.keycloak, timeoutMs }),
    wac: new WacCoreClient(tokens, { url: config.wacCoreUrl, timeoutMs }),
  };
}

/** The arguments, or what is wrong with them. */
function parseArguments(argv: string[]): Arguments | string {
  const args: Arguments = { fix: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--fix') args.fix = true;
    else if (arg === '--json') args.json = true;
    else if (arg === '--domain' || arg.startsWith('--domain=')) {
      const value = arg === '--domain' ? argv[++i] : arg.slice('--domain='.length);
      if (!value || value.startsWith('--')) return '--domain needs a domain name';
      if (args.domain !== undefined) return '--domain may be given once';
      args.domain = value;
    } else return `unknown argument ${JSON.stringify(arg)}`;
  }
  return args;
}
