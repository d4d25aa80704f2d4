import { Job, type Queue } from 'bullmq';
// BullMQ's own scripts for adding one job with a priority (the one `addBulk` runs for each job
// of an import's chunk), and one without (what `queue.add` runs for a single request). BullMQ
// is pinned to one version in package.json: these paths are that version's, and every write
// of the API goes through them.
import { addPrioritizedJob } from 'bullmq/dist/esm/scripts/addPrioritizedJob-9.js';
import { addStandardJob } from 'bullmq/dist/esm/scripts/addStandardJob-9.js';

import type { RedisClient } from '../redis.js';

/**
 * Jobs of one chunk, as the import's reader thread builds them: `lines` holds, for each of the
 * `count` jobs, its order key (a user's, without the prefix: see `orderKeyOfUser`), its id and
 * its data as JSON, each followed by a line feed (none of them holds one: JSON.stringify never
 * writes a raw line feed), in UTF-8. Bytes, not strings, so that the thread hands them over
 * without a copy, and the API's thread allocates nothing a job: the memory a chunk takes goes
 * back as soon as it is written, not at V8's next full collection (strings that live until
 * Redis answers are promoted to the old generation, and an import's filled it with tens of
 * megabytes, BENCHMARKS.md §7).
 */
export interface PackedJobs {
  lines: Uint8Array;
  count: number;
}

/**
 * Adds a chunk of jobs with a script that runs, for each job, BullMQ's own script for a
 * prioritized job, with the arguments BullMQ builds for it: the same records, events and
 * markers as `addBulk`, without a Job object, a JSON copy and a command a job in the API's
 * thread. Each job first claims its order key (`SET … GET`), and waits `after` the job the key
 * pointed at before, as `JobGateway.submitBulk` orders jobs. Jobs that exist already are not
 * added again.
 *
 * Why: `addBulk` of 500 jobs allocates megabytes that live until Redis answers, and during an
 * import the API's heap grew from 45 to 180 MB between collections (BENCHMARKS.md §7). The
 * equivalence with `addBulk` is tested (`test/integration/chunk-add.test.ts`) against the
 * installed BullMQ; the capture below fails with `ChunkAddFault` when BullMQ's arguments change
 * shape.
 */
export class ChunkAdder {
  private defined = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly orderTtlS: number,
  ) {}

  async add(
    queue: Queue,
    name: string,
    jobs: PackedJobs,
    options: { priority: number; orderKeyPrefix: string },
  ): Promise<void> {
    // Without one, BullMQ adds a job with another script than the one this wraps.
    if (!(options.priority >= 1)) throw new ChunkAddFault('a chunk needs a priority of 1 or more');
    const template = await templateOf(queue, name, options.priority);
    const lines = Buffer.from(jobs.lines.buffer, jobs.lines.byteOffset, jobs.lines.byteLength);
    const { keys, args, opts } = template;
    const runner = this.runner();
    const calls: Array<Promise<unknown>> = [];
    // A script holds Redis for as long as it runs; a few dozen jobs a call keep every other
    // client's wait as short as behind a pipeline of single adds.
    for (let first = 0, start = 0; first < jobs.count; first += JOBS_PER_CALL) {
      const end = endOfLines(
        lines,
        start,
        LINES_PER_JOB * Math.min(JOBS_PER_CALL, jobs.count - first),
      );
      const part = lines.subarray(start, end);
      calls.push(
        runner.kitterAddChunk(
          keys.length,
          ...keys,
          args,
          opts,
          this.orderTtlS,
          options.orderKeyPrefix,
          part,
        ),
      );
      start = end;
    }
    for (const failed of await Promise.all(calls)) {
      if (failed !== 0) throw new Error(`BullMQ's script refused a job of the chunk (${failed})`);
    }
  }

  /**
   * Adds one job as `queue.add` adds it, and claims its order key in the same script call, as
   * `JobGateway.submitBulk` orders jobs: one command a request instead of a `SET … GET` and
   * BullMQ's script after it (each command is a write to the socket, the largest single cost
   * of an API request after validation, BENCHMARKS.md §1). Answers the job, whose data names in
   * `after` the job the key pointed at before, if another. A job whose id exists is not added
   * again, as with `queue.add`, nor does it take its order key back. What `queue.add` does
   * beside the script is left out, none of it used here: its checks of options and ids (kitter's
   * ids are UUIDs and import row names), its telemetry span, its local 'waiting' event.
   */
  async addOne<T extends object>(
    queue: Queue,
    name: string,
    data: T,
    options: { jobId: string; orderKey: string },
  ): Promise<Job<T & { after?: string }>> {
    const { jobId, orderKey } = options;
    const job = new Job<T & { after?: string }>(
      queue,
      name,
      data,
      { ...queue.defaultJobOptions, jobId },
      jobId,
    );
    const call = await addCommandOf(queue, job, addStandardJob);
    if (typeof call.args[call.keys + 1] !== 'string') {
      throw new ChunkAddFault(`BullMQ no longer adds a job as ${addStandardJob.name}`);
    }
    const [packedArgs, json, packedOpts] = call.args.slice(call.keys);
    const keys = call.args.slice(0, call.keys);
    const [result, before] = (await this.runner().kitterAddOne(
      call.keys + 1,
      ...keys,
      orderKey,
      packedArgs,
      json,
      packedOpts,
      this.orderTtlS,
      jobId,
    )) as [unknown, string | null];
    if (typeof result === 'number' && result < 0) {
      throw new Error(`BullMQ's script refused the job (${result})`);
    }
    if (before !== null && before !== jobId) job.data.after = before;
    return job;
  }

  private runner(): Runner {
    if (!this.defined) {
      this.redis.defineCommand('kitterAddChunk', { lua: CHUNK_SCRIPT });
      this.redis.defineCommand('kitterAddOne', { lua: ONE_SCRIPT });
      this.defined = true;
    }
    return this.redis as Runner;
  }
}

/** The connection, with the two scripts defined on it. */
type Runner = RedisClient & {
  kitterAddChunk(...args: unknown[]): Promise<unknown>;
  kitterAddOne(...args: unknown[]): Promise<unknown>;
};

/** Jobs a script call adds, at most: BullMQ's script takes 20–70 µs a job. */
const JOBS_PER_CALL = 50;

/** A job's order key, id and data. */
const LINES_PER_JOB = 3;

/** Where the `count`th line feed from `start` ends (the end of `lines` if there are fewer). */
function endOfLines(lines: Buffer, start: number, count: number): number {
  let end = start;
  for (let i = 0; i < count; i++) {
    const feed = lines.indexOf(0x0a, end);
    if (feed < 0) return lines.length;
    end = feed + 1;
  }
  return end;
}

/**
 * A fault of this code, not Redis being away (so not answered 503): it no longer matches the
 * installed BullMQ (see the test named above), or it was asked for a chunk without a priority.
 */
export class ChunkAddFault extends Error {}

/** BullMQ's keys for a prioritized job of the queue, its packed arguments and options. */
interface Template {
  keys: string[];
  args: Buffer;
  opts: Buffer;
}

/**
 * The arguments BullMQ would send for one job of `name` with `priority` added to `queue` now,
 * captured from BullMQ itself (each job of the chunk gets its own id, and the chunk's time): a Job
 * made as `addBulk` makes it, handed to the queue's backend with a client that records the
 * command instead of sending it.
 */
async function templateOf(queue: Queue, name: string, priority: number): Promise<Template> {
  const jobId = 'template';
  const opts = { ...queue.defaultJobOptions, priority, jobId };
  const call = await addCommandOf(queue, new Job(queue, name, {}, opts, jobId), addPrioritizedJob);
  const { keys, args } = call;
  if (!Buffer.isBuffer(args[keys]) || !Buffer.isBuffer(args[keys + 2])) {
    throw new ChunkAddFault(`BullMQ no longer adds a prioritized job as ${addPrioritizedJob.name}`);
  }
  return {
    keys: args.slice(0, keys) as string[],
    args: args[keys] as Buffer,
    opts: args[keys + 2] as Buffer,
  };
}

/**
 * The command BullMQ would send to add `job` to `queue` now, handed to the queue's backend
 * with a client that records the command instead of sending it: the arguments of `script`
 * (its keys, then its packed arguments, the job's data and its packed options). A fault when
 * BullMQ would run another script for it, or with other arguments.
 */
async function addCommandOf(
  queue: Queue,
  job: Job,
  script: { name: string; keys: number },
): Promise<{ keys: number; args: unknown[] }> {
  let captured: { command: string; args: unknown[] } | undefined;
  const recorder = {
    runCommand: (command: string, args: unknown[]) => {
      captured = { command, args };
      return Promise.resolve(job.id);
    },
  };
  const backend = (queue as unknown as { backend: Backend }).backend;
  await backend.addJobToTransaction(recorder, job.asJSON(), job.id!);
  const { command = '', args = [] } = captured ?? {};
  if (!command.startsWith(`${script.name}:`) || args.length !== script.keys + 3) {
    throw new ChunkAddFault(`BullMQ no longer adds such a job as ${script.name}`);
  }
  return { keys: script.keys, args };
}

interface Backend {
  addJobToTransaction(client: unknown, job: unknown, jobId: string): Promise<unknown>;
}

/** Lua: a job's data (a JSON object) with `after` added as its last field. */
const WITH_AFTER = `
local function withAfter(data, before)
  local comma = ','
  if string.sub(data, -2) == '{}' then comma = '' end
  return string.sub(data, 1, -2) .. comma .. '"after":' .. cjson.encode(before) .. '}'
end
`;

/**
 * Lua: BullMQ's `script` as the function `addOne(KEYS, ARGV)`, `withAfter`, and `queueKeys`, the
 * first KEYS, BullMQ's own for it.
 */
function wrapped(script: { content: string; keys: number }): string {
  return `
local function addOne(KEYS, ARGV)
${script.content}
end
${WITH_AFTER}
local queueKeys = {}
for i = 1, ${script.keys} do queueKeys[i] = KEYS[i] end`;
}

/**
 * KEYS: BullMQ's keys for a prioritized job. ARGV: the template's packed arguments and options,
 * the order keys' time to live and prefix, the jobs' lines. The order keys are named here, as
 * BullMQ's scripts name each job's keys from the queue's prefix: in a Redis Cluster both
 * prefixes hold the same hash tag, so every key is in the slot of KEYS[1]. Answers 0, or the
 * code of the first job BullMQ's script refused (its codes are negative).
 */
const CHUNK_SCRIPT = `${wrapped(addPrioritizedJob)}
local args = cmsgpack.unpack(ARGV[1])
local opts = cmsgpack.unpack(ARGV[2])
local ttl = ARGV[3]
local orderPrefix = ARGV[4]
local lines = ARGV[5]

local pos = 1
while pos <= #lines do
  local keyEnd = string.find(lines, '\\n', pos, true)
  local idEnd = string.find(lines, '\\n', keyEnd + 1, true)
  local dataEnd = string.find(lines, '\\n', idEnd + 1, true)
  local orderKey = orderPrefix .. string.sub(lines, pos, keyEnd - 1)
  local id = string.sub(lines, keyEnd + 1, idEnd - 1)
  local data = string.sub(lines, idEnd + 1, dataEnd - 1)
  pos = dataEnd + 1

  -- A job there already is not added again, and its key stays with the job added since.
  if redis.call('EXISTS', args[1] .. id) == 0 then
    local before = redis.call('SET', orderKey, id, 'EX', ttl, 'GET')
    if before and before ~= id then data = withAfter(data, before) end
  end

  args[2] = id
  opts['jobId'] = id
  local result = addOne(queueKeys, { cmsgpack.pack(args), data, cmsgpack.pack(opts) })
  if type(result) == 'number' and result < 0 then return result end
end
return 0
`;

/**
 * KEYS: BullMQ's keys for a job without a priority, then the order key. ARGV: BullMQ's packed
 * arguments, the job's data as JSON and its packed options, the order key's time to live, the
 * job's id. Claims the order key as CHUNK_SCRIPT does, then runs BullMQ's script. Answers what
 * BullMQ's script answers (the id, or its negative code) and the job the key pointed at before.
 */
const ONE_SCRIPT = `${wrapped(addStandardJob)}
local data = ARGV[2]
local id = ARGV[5]

-- A job there already (a replay) is not added again, and its key stays with the job added since.
local before = false
if redis.call('EXISTS', cmsgpack.unpack(ARGV[1])[1] .. id) == 0 then
  before = redis.call('SET', KEYS[${addStandardJob.keys} + 1], id, 'EX', ARGV[4], 'GET')
  if before and before ~= id then data = withAfter(data, before) end
end

local result = addOne(queueKeys, { ARGV[1], data, ARGV[3] })
return { result, before }
`;
