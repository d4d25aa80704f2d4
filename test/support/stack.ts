import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';

import { loadConfig, type Config } from '../../src/config.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../../src/emulators/keycloak.js';
import { startWacCoreEmulator, type WacCoreEmulator } from '../../src/emulators/wac-core.js';
import { createLogger } from '../../src/logger.js';
import { startService, type RunningService } from '../../src/service.js';
import { assertContract } from './contract.js';
import { testRedisUrl } from './redis.js';

export const API_TOKEN = 'test-api-token-0123456789';
export const CLIENT_SECRET = 'test-client-secret';

export interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

export interface Stack {
  keycloak: KeycloakEmulator;
  wac: WacCoreEmulator;
  service: RunningService;
  config: Config;
  /** The environment the stack's configuration was read from (for processes of its own). */
  env: Record<string, string>;
  /** Every log line the service wrote, as text. */
  logs: string[];
  call(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<Answer>;
  close(): Promise<void>;
}

/**
 * The whole service in this process against both emulators on port 0 and the tests' Redis (or
 * the Sentinel or Cluster that `env` names), under a queue prefix of its own.
 */
export async function startStack(
  env: Record<string, string> = {},
  parts = { api: true, worker: true },
): Promise<Stack> {
  const keycloak = await startKeycloakEmulator({
    realm: 'quobis',
    clients: [{ clientId: 'kitter', clientSecret: CLIENT_SECRET }],
  });
  const wac = await startWacCoreEmulator({ verifyToken: (token) => keycloak.verifyToken(token) });

  // A test that names a Sentinel or a Cluster gets no REDIS_URL: kitter takes one topology.
  const otherTopology = env.REDIS_SENTINELS ?? env.REDIS_CLUSTER_NODES;
  const fullEnv: Record<string, string> = {
    ...(otherTopology ? {} : { REDIS_URL: await testRedisUrl() }),
    KITTER_QUEUE_PREFIX: `test-${randomBytes(6).toString('hex')}`,
    KEYCLOAK_URL: keycloak.url,
    WAC_CORE_URL: wac.baseUrl,
    KEYCLOAK_CLIENT_SECRET: CLIENT_SECRET,
    KITTER_API_TOKENS: API_TOKEN,
    KITTER_SECRET_KEY: 'test-secret-key-0123456789',
    KITTER_JOB_BACKOFF_MS: '20',
    KITTER_BACKEND_TIMEOUT_MS: '2000',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
    ...env,
  };
  const config = loadConfig('all', fullEnv);

  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const service = await startService(config, createLogger(config.logLevel, sink), parts);

  return {
    keycloak,
    wac,
    service,
    config,
    env: fullEnv,
    logs,
    async call(method, path, body, headers = {}) {
      const init: RequestInit = {
        method,
        headers: { authorization: `Bearer ${API_TOKEN}`, ...headers },
      };
      if (body !== undefined) {
        // A string or bytes as they are (a compressed body), anything else as JSON.
        init.body =
          typeof body === 'string' || body instanceof Uint8Array
            ? (body as BodyInit)
            : JSON.stringify(body);
        (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
      }
      const response = await fetch(`${service.url}${path}`, init);
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: keep the text
      }
      const answer = { status: response.status, headers: response.headers, body: parsed };

      // Every answer an integration test gets is checked against /openapi.json here: throwing
      // fails the very test that got it, with what broke the contract and the body it saw.
      assertContract(config, method, path, answer);
      return answer;
    },
    async close() {
      await service.close();
      await wac.close();
      await keycloak.close();
    },
  };
}

/** Sends raw bytes to the server and answers what comes back before it closes. */
export function rawRequest(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}
