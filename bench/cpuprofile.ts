/**
 * Where a process spent its time, from a `.cpuprofile` written by `node --cpu-prof` (run a
 * benchmark with BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof"): self time by package and
 * by function, and total (self + callees) time of kitter's own functions.
 *
 *   npx tsx bench/cpuprofile.ts prof/CPU....cpuprofile [how many lines, default 25] [FUNCTION]
 *
 * With FUNCTION, also the stacks (innermost 8 frames) that spent the most self time in it.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, lines = '25', traced] = process.argv.slice(2);
if (!file) {
  console.error('usage: npx tsx bench/cpuprofile.ts FILE.cpuprofile [LINES]');
  process.exit(2);
}
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const top = Number(lines);

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes)
  for (const child of node.children ?? []) parent.set(child, node.id);

const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + profile.timeDeltas[i]));
const total = [...self.values()].reduce((sum, us) => sum + us, 0);

/** Where a function comes from: a package, kitter's own code, node's internals, or V8. */
function packageOf(url: string): string {
  if (url === '') return '(V8, GC, idle)';
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/dist/') || url.includes('/src/')) return 'kitter';
  return url;
}

const name = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url
    ? `${url.replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${lineNumber + 1}`
    : '';
  return `${functionName || '(anonymous)'} ${where}`.trim();
};

const add = (map: Map<string, number>, key: string, us: number) =>
  map.set(key, (map.get(key) ?? 0) + us);
const packages = new Map<string, number>();
const stacks = new Map<string, number>();
const functions = new Map<string, number>();
const kitterTotal = new Map<string, number>();
for (const [id, us] of self) {
  const node = byId.get(id)!;
  add(packages, packageOf(node.callFrame.url), us);
  add(functions, name(node), us);
  if (traced && node.callFrame.functionName === traced) {
    const frames: string[] = [];
    for (let at = parent.get(id); at !== undefined && frames.length < 8; at = parent.get(at)) {
      frames.push(name(byId.get(at)!));
    }
    add(stacks, frames.join('\n             < '), us);
  }

  // Each kitter function on the stack once, however deep the recursion.
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const frame = byId.get(at)!;
    if (packageOf(frame.callFrame.url) !== 'kitter') continue;
    const key = name(frame);
    if (!seen.has(key)) add(kitterTotal, key, us);
    seen.add(key);
  }
}

const print = (title: string, map: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    const ms = (us / 1000).toFixed(0).padStart(8);
    console.log(`${ms} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
  }
};
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
print('self time by package', packages);
print('self time by function', functions);
print("total time of kitter's functions (self + callees)", kitterTotal);
if (traced) print(`where ${traced} was called from`, stacks);
