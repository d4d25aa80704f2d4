import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = path.join(ROOT, 'bench', 'results.json');

/**
 * How an API process is started in production (the `entrypoint` of docker-compose.yml's `api`
 * service): V8's young generation held to 2 MB a half instead of growing to 16, and its old one
 * collected once it has grown by half since the last collection, which keeps the API near
 * 130 MB through an import and through any number of requests (BENCHMARKS.md §7).
 * BENCH_API_NODE_ARGS replaces them, for a comparison (`BENCH_API_NODE_ARGS=` starts the API on
 * V8's defaults).
 */
export const API_NODE_ARGS = ['--max-semi-space-size=2', '--heap-growing-percent=50'];

/**
 * And a worker (docker-compose.yml's `worker` service): its old generation collected once it has
 * grown by half, which holds a worker near 155 MB instead of a ceiling near 300 (BENCHMARKS.md
 * §5). BENCH_WORKER_NODE_ARGS replaces it (`BENCH_WORKER_NODE_ARGS=` for V8's defaults).
 */
export const WORKER_NODE_ARGS = ['--heap-growing-percent=50'];

function apiNodeArgs(): string[] {
  return process.env.BENCH_API_NODE_ARGS?.split(' ').filter(Boolean) ?? API_NODE_ARGS;
}

function workerNodeArgs(): string[] {
  return process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? WORKER_NODE_ARGS;
}

/**
 * A kitter process started from the build (`npm run build` first), as it runs in production,
 * logging warnings only. Resolves once `ready` says so (the API answers, workers registered).
 */
export async function startKitter(
  mode: 'api' | 'worker' | 'all',
  env: Record<string, string>,
  ready: () => Promise<boolean>,
): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  // BENCH_NODE_ARGS, e.g. `--cpu-prof --cpu-prof-dir=prof`, shows where a process spends time.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const modeArgs = mode === 'api' ? apiNodeArgs() : mode === 'worker' ? workerNodeArgs() : [];
  // BENCH_DIST names another build in the project (see bench/compare.ts).
  const main = `${process.env.BENCH_DIST ?? 'dist'}/main.js`;
  const child = spawn(process.execPath, [...modeArgs, ...nodeArgs, main, mode], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.removeListener('exit', kill));

  const deadline = Date.now() + 20_000;
  while (!(await ready().catch(() => false))) {
    if (child.exitCode !== null) throw new Error(`kitter ${mode} exited (${child.exitCode})`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`kitter ${mode} did not become ready`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** Ready when the API at `url` answers its liveness check. */
export const apiAnswers = (url: string) => async () =>
  (await fetch(`${url}/health/live`)).status === 200;

/** Peak resident memory of a process so far, in MB (Linux: VmHWM). */
export async function peakRssMb(pid: number): Promise<number> {
  return statusMb(pid, 'VmHWM');
}

/** A process's resident memory now, in MB. */
export async function rssMb(pid: number): Promise<number> {
  return statusMb(pid, 'VmRSS');
}

async function statusMb(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return Math.round(kb / 1024);
}

export function machine() {
  return {
    node: process.version,
    cores: os.availableParallelism(),
    date: new Date().toISOString(),
    // How the benchmarks started the API and the workers (see API_NODE_ARGS).
    api_node_args: apiNodeArgs().join(' '),
    worker_node_args: workerNodeArgs().join(' '),
  };
}

/** Keeps each benchmark's last figures in bench/results.json, so later runs can be compared. */
export async function saveResult(name: string, result: unknown): Promise<void> {
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(await readFile(RESULTS, 'utf8'));
  } catch {
    // the first result
  }
  all[name] = result;
  await writeFile(RESULTS, `${JSON.stringify(all, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Shared by the benchmarks below: repeated runs, the emulators in a process of their own, users

/** How many times each benchmark runs its measurements; the figures reported are the medians. */
export const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));

/** The emulators' fixed latency on every backend call, in ms. */
export const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 20);

export const TOKEN = 'bench-token-0123456789abcdef';
export const SECRET_KEY = 'bench-secret-key-0123456789';
export const CLIENT_SECRET = 'bench-secret';
export const DOMAIN = 'example.com';

/** The median, to 0.01. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const value =
    sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return round(value, 2);
}

/**
 * kitter's figure over the baseline's, run by run (each pair measured back to back, so the
 * machine's drift between runs cancels out), and the median of those ratios.
 */
export function pairedRatio(kitter: number[], baseline: number[]): number {
  return median(kitter.map((value, i) => value / baseline[i]));
}

/** The value below which `p` percent of `sorted` (ascending) lie. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const round = (value: number, digits = 0) => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};

/** CPU time a process has used so far (user + system), in seconds (Linux: /proc/PID/stat). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A `POST /users` body: every field, a password and a SIP mapping (so two sealed secrets). */
export function userInput(run: string, i: number) {
  const username = `u${run}-${i}`;
  return {
    username,
    email: `${username}@example.com`,
    first_name: `First${i}`,
    last_name: `Last${i}`,
    credentials: { password: `Pass-${i}-word!`, temporary: false },
    attributes: {
      domain: DOMAIN,
      phone_number: `+3460${String(i).padStart(7, '0')}`,
      capabilities: ['+chat', '+whiteboard'],
      sip_mapping: {
        username: `sip_${username}`,
        password: `sip-pass-${i}`,
        sip_domain: DOMAIN,
        sip_auth_proxy: 'sip:127.0.0.1:15060',
      },
    },
  };
}

/** The environment of a kitter process against the benchmark's Redis and emulators. */
export function kitterEnv(
  redisUrl: string,
  backends: { keycloakUrl: string; wacBaseUrl: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    REDIS_URL: redisUrl,
    KITTER_QUEUE_PREFIX: 'bench',
    KEYCLOAK_URL: backends.keycloakUrl,
    KEYCLOAK_CLIENT_SECRET: CLIENT_SECRET,
    WAC_CORE_URL: backends.wacBaseUrl,
    KITTER_API_TOKENS: TOKEN,
    KITTER_SECRET_KEY: SECRET_KEY,
    ...extra,
  };
}

export interface Backends {
  keycloakUrl: string;
  wacBaseUrl: string;
  pid: number;
  /** Asks the emulators' process (see bench/backends.ts); answers what it answers. */
  call<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Both emulators in a process of their own, with `latency_ms` on every request, so that the
 * benchmark's own load generation and polling do not share an event loop with them.
 */
export async function startBackends(latencyMs = LATENCY_MS): Promise<Backends> {
  const child = fork(path.join(ROOT, 'bench', 'backends.ts'), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx'],
    env: { PATH: process.env.PATH ?? '', BENCH_LATENCY_MS: String(latencyMs) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  process.once('exit', () => child.kill('SIGKILL'));

  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let ready!: (urls: { keycloakUrl: string; wacBaseUrl: string }) => void;
  const started = new Promise<{ keycloakUrl: string; wacBaseUrl: string }>((resolve, reject) => {
    ready = resolve;
    child.once('exit', (code) => reject(new Error(`bench/backends.ts exited (${code})`)));
  });
  child.on(
    'message',
    (message: { id?: number; ready?: boolean; result?: unknown; error?: string }) => {
      if (message.ready) return ready(message as never);
      const waiter = pending.get(message.id!);
      pending.delete(message.id!);
      if (message.error !== undefined) waiter?.reject(new Error(message.error));
      else waiter?.resolve(message.result);
    },
  );

  const urls = await started;
  let next = 0;
  return {
    ...urls,
    pid: child.pid!,
    call: <T>(op: string, args: Record<string, unknown> = {}) =>
      new Promise<T>((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, op, args });
      }),
    close: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

export interface BenchChild {
  pid: number;
  /** Sends `input` to the child's handler; answers its result. */
  run<T>(input: unknown): Promise<T>;
  stop(): Promise<void>;
}

/**
 * A TypeScript file of bench/ in a child process that serves `serveChild`: resolves once it is
 * loaded and ready, so that several can be told to start at the same moment.
 */
export async function startChild(file: string): Promise<BenchChild> {
  const child = fork(path.join(ROOT, 'bench', file), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx'],
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);

  let exited!: (err: Error) => void;
  const exit = new Promise<never>((_resolve, reject) => (exited = reject));
  exit.catch(() => undefined);
  child.once('exit', (code) => exited(new Error(`bench/${file} exited (${code})`)));
  const message = () =>
    Promise.race([
      new Promise<{ result?: unknown; error?: string }>((resolve) =>
        child.once('message', resolve as (m: unknown) => void),
      ),
      exit,
    ]);

  await message();
  return {
    pid: child.pid!,
    async run<T>(input: unknown) {
      const answer = message();
      child.send({ input });
      const { result, error } = await answer;
      if (error !== undefined) throw new Error(`bench/${file}: ${error}`);
      return result as T;
    },
    async stop() {
      process.removeListener('exit', kill);
      if (child.exitCode !== null) return;
      child.send('exit');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** The child's side of `startChild`: runs `handle` on each input, answers over IPC. */
export function serveChild(handle: (input: any) => Promise<unknown>): void {
  process.on('message', async (message: 'exit' | { input: unknown }) => {
    if (message === 'exit') process.exit(0);
    try {
      process.send!({ result: await handle(message.input) });
    } catch (err) {
      process.send!({ error: String((err as Error).stack ?? err) });
    }
  });
  process.send!({ ready: true });
}

/**
 * Measures the baseline and kitter one after the other, RUNS times, printing each run; answers
 * every run's figures, the medians of users/s and their ratio (the median of each run's own
 * ratio, and the ratio of the medians).
 */
export async function alternateRuns<T extends { users_per_s: number }>(
  baseline: (run: number) => Promise<T>,
  kitter: (run: number) => Promise<T>,
) {
  const kitterRuns: T[] = [];
  const baselineRuns: T[] = [];
  for (let run = 0; run < RUNS; run++) {
    baselineRuns.push(await baseline(run));
    kitterRuns.push(await kitter(run));
    console.log(
      `  run ${run + 1}/${RUNS}: kitter ${kitterRuns[run].users_per_s} users/s, ` +
        `direct ${baselineRuns[run].users_per_s} users/s`,
    );
  }
  const kitterRate = median(kitterRuns.map((m) => m.users_per_s));
  const baselineRate = median(baselineRuns.map((m) => m.users_per_s));
  return {
    kitterRuns,
    baselineRuns,
    kitterRate,
    baselineRate,
    ratio: pairedRatio(
      kitterRuns.map((m) => m.users_per_s),
      baselineRuns.map((m) => m.users_per_s),
    ),
    ratioOfMedians: round(kitterRate / baselineRate, 2),
  };
}
