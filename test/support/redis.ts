import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { Redis } from 'ioredis';

let started: Promise<string> | undefined;
let child: ChildProcess | undefined;

/**
 * The Redis the tests use: `REDIS_URL` when set, else a `redis-server` of their own on a free
 * loopback port (started once per test run, stopped when the run ends), so the tests never
 * touch a Redis someone else is using. Each test keeps apart with its own queue prefix.
 */
export function testRedisUrl(): Promise<string> {
  if (process.env.REDIS_URL) return Promise.resolve(process.env.REDIS_URL);
  started ??= startRedisServer();
  return started;
}

async function startRedisServer(): Promise<string> {
  const port = await freePort();
  child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  child.on('error', (err) => {
    throw new Error(`cannot start redis-server (is it installed?): ${err.message}`);
  });
  process.once('exit', () => child?.kill('SIGKILL'));

  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await answers(url)) return url;
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} did not start`);
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
