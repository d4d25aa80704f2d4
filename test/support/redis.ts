import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { Redis } from 'ioredis';

let shared: Promise<string> | undefined;

/**
 * The Redis the tests use: `REDIS_URL` when set, else a `redis-server` of their own on a free
 * loopback port (started once per test run, stopped when the run ends), so the tests never
 * touch a Redis someone else is using. Each test keeps apart with its own queue prefix.
 */
export function testRedisUrl(): Promise<string> {
  if (process.env.REDIS_URL) return Promise.resolve(process.env.REDIS_URL);
  shared ??= startRedisServer().then((server) => server.url);
  return shared;
}

export interface RedisServer {
  url: string;
  port: number;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
}

/**
 * A `redis-server` of the caller's own, on `port` or a free one; killed when the run ends.
 * `settings` come last, so they override the defaults (`['--maxmemory-policy', 'allkeys-lru']`).
 */
export async function startRedisServer(
  port?: number,
  settings: string[] = [],
): Promise<RedisServer> {
  const chosen = port ?? (await freePort());
  const child: ChildProcess = spawn(
    'redis-server',
    [
      ...['--port', String(chosen), '--bind', '127.0.0.1'],
      ...['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
      ...settings,
    ],
    { stdio: 'ignore' },
  );
  child.on('error', (err) => {
    throw new Error(`cannot start redis-server (is it installed?): ${err.message}`);
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const url = `redis://127.0.0.1:${chosen}`;
  for (let i = 0; i < 100 && !(await answers(url)); i++) await sleep(50);
  if (!(await answers(url))) throw new Error(`redis-server on port ${chosen} did not start`);

  return {
    url,
    port: chosen,
    async kill() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
