import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { Redis } from 'ioredis';

import { until } from './fixtures.js';
import { freePort } from './redis.js';

/** Private Redis processes on loopback, in a temporary folder of their own. */
interface Processes {
  dir: string;
  start(args: string[]): Promise<number>;
  stop(): Promise<void>;
}

const QUIET = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];

function processes(name: string): Processes {
  const dir = mkdtempSync(path.join(tmpdir(), `kitter-${name}-`));
  const children: ChildProcess[] = [];
  const killAll = () => children.forEach((child) => child.kill('SIGKILL'));
  process.once('exit', killAll);

  return {
    dir,
    async start(args) {
      const port = await freePort();
      const child = spawn('redis-server', [...args, '--port', String(port)], {
        cwd: dir,
        stdio: 'ignore',
      });
      children.push(child);
      let failed: Error | undefined;
      child.on('error', (err) => (failed = err));
      await until(`redis-server on port ${port}`, async () => {
        if (failed) throw new Error(`cannot start redis-server: ${failed.message}`);
        return answers(port);
      });
      return port;
    },
    async stop() {
      process.removeListener('exit', killAll);
      await Promise.all(
        children
          .filter((child) => child.exitCode === null && child.signalCode === null)
          .map((child) => {
            child.kill('SIGKILL');
            return once(child, 'exit');
          }),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  /** `127.0.0.1:port,...`, as REDIS_CLUSTER_NODES takes them. */
  nodes: string;
  ports: number[];
  stop(): Promise<void>;
}

/** `size` masters, no replicas, the slots shared out by `redis-cli --cluster create`. */
export async function startRedisCluster(size = 3): Promise<RedisCluster> {
  const servers = processes('cluster');
  const ports: number[] = [];
  for (let i = 0; i < size; i++) {
    ports.push(
      await servers.start([
        ...QUIET,
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}.conf`],
        ...['--cluster-node-timeout', '2000', '--maxmemory-policy', 'noeviction'],
      ]),
    );
  }

  const addresses = ports.map((port) => `127.0.0.1:${port}`);
  const created = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 20_000 },
  );
  if (created.status !== 0) {
    await servers.stop();
    throw new Error(`redis-cli --cluster create failed: ${created.error ?? created.stdout}`);
  }
  for (const port of ports) {
    await until('the cluster', async () => {
      const info = await ask(port, ['CLUSTER', 'INFO']);
      return String(info).includes('cluster_state:ok');
    });
  }

  return { nodes: addresses.join(','), ports, stop: () => servers.stop() };
}

export interface RedisSentinel {
  /** `127.0.0.1:port`, as REDIS_SENTINELS takes it. */
  sentinels: string;
  name: string;
  primaryPort: number;
  replicaPort: number;
  /** The port of the server the Sentinel names primary now. */
  primary(): Promise<number>;
  /** `SENTINEL FAILOVER`; resolves once the Sentinel names another server primary. */
  failover(): Promise<void>;
  stop(): Promise<void>;
}

/** A primary, its replica and one Sentinel watching them (quorum 1). */
export async function startRedisSentinel(name = 'kitter-test'): Promise<RedisSentinel> {
  const servers = processes('sentinel');
  // A replica that must sync in full starts at once, not after the default 5 s.
  const data = ['--maxmemory-policy', 'noeviction', '--repl-diskless-sync-delay', '0'];
  const primaryPort = await servers.start([...QUIET, ...data]);
  const replicaPort = await servers.start([
    ...[...QUIET, ...data, '--replicaof', '127.0.0.1', String(primaryPort)],
  ]);

  // Sentinel rewrites its configuration file as it learns, so it lives in the temporary folder.
  const config = path.join(servers.dir, 'sentinel.conf');
  writeFileSync(
    config,
    [
      'bind 127.0.0.1',
      `dir ${servers.dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${name} 2000`,
      `sentinel failover-timeout ${name} 10000`,
      '',
    ].join('\n'),
  );
  const sentinelPort = await servers.start([config, '--sentinel']);

  // SENTINEL FAILOVER needs a replica the Sentinel knows and finds in sync.
  await until('the Sentinel to know the replica', async () => {
    const replicas = (await ask(sentinelPort, ['SENTINEL', 'REPLICAS', name])) as string[][];
    return replicas.some((fields) => {
      const replica = Object.fromEntries(pairs(fields));
      return (
        replica.port === String(replicaPort) &&
        replica.flags === 'slave' &&
        replica['master-link-status'] === 'ok'
      );
    });
  });

  const primary = async () => {
    const [, port] = (await ask(sentinelPort, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name])) as [
      string,
      string,
    ];
    return Number(port);
  };

  return {
    sentinels: `127.0.0.1:${sentinelPort}`,
    name,
    primaryPort,
    replicaPort,
    primary,
    async failover() {
      const before = await primary();
      await ask(sentinelPort, ['SENTINEL', 'FAILOVER', name]);
      await until('the failover', async () => (await primary()) !== before);
    },
    stop: () => servers.stop(),
  };
}

function pairs(fields: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}

/** One command to one server, on a connection of its own. */
async function ask(port: number, command: string[]): Promise<unknown> {
  const redis = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await redis.call(command[0], ...command.slice(1));
  } finally {
    redis.disconnect();
  }
}

async function answers(port: number): Promise<boolean> {
  try {
    return (await ask(port, ['PING'])) === 'PONG';
  } catch {
    return false;
  }
}
