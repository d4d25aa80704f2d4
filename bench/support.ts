import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = path.join(ROOT, 'bench', 'results.json');

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
  const child = spawn(process.execPath, [...nodeArgs, 'dist/main.js', mode], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  process.once('exit', () => child.kill('SIGKILL'));

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
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return Math.round(kb / 1024);
}

export function machine() {
  return {
    node: process.version,
    cores: (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator
      ?.hardwareConcurrency,
    date: new Date().toISOString(),
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
