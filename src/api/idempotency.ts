import { createHash, createHmac, randomUUID } from 'node:crypto';

import { errors } from '../errors.js';
import type { RedisClient } from '../redis.js';

/** How long a key keeps its job: as long as a finished job is kept. */
const TTL_S = 24 * 3600;

const KEY = /^[\x21-\x7e]{1,255}$/;

export interface Claim {
  jobId: string;
  /** False when an earlier request with the same key and body already has this job. */
  fresh: boolean;
}

/**
 * `Idempotency-Key` on writes: the first request with a key claims a job id for it; a repeat
 * with the same request gets the same job back, within 24 hours; the same key with another
 * request is a conflict. Requests are compared by an HMAC of method, path and body, so the
 * passwords in a body are not kept in a form that could be reversed.
 */
export class IdempotencyKeys {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly secretKey: string,
  ) {}

  async claim(key: string, method: string, path: string, body: unknown): Promise<Claim> {
    if (!KEY.test(key)) {
      throw errors.validation('Idempotency-Key must be 1–255 visible ASCII characters');
    }

    const redisKey = `${this.prefix}:idempotency:${createHash('sha256').update(key).digest('hex')}`;
    const fingerprint = createHmac('sha256', this.secretKey)
      .update(`${method} ${path}\n${JSON.stringify(body ?? null)}`)
      .digest('hex');
    const jobId = randomUUID();

    let stored: string | null;
    try {
      const record = JSON.stringify({ jobId, fingerprint });
      if (await this.redis.set(redisKey, record, 'EX', TTL_S, 'NX')) return { jobId, fresh: true };
      stored = await this.redis.get(redisKey);
    } catch (err) {
      throw errors.queueUnavailable(err);
    }

    // The key expired between the two calls: the request is new after all.
    if (!stored) return this.claim(key, method, path, body);

    const earlier = JSON.parse(stored) as { jobId: string; fingerprint: string };
    if (earlier.fingerprint !== fingerprint) {
      throw errors.conflict('this Idempotency-Key was already used with a different request');
    }
    return { jobId: earlier.jobId, fresh: false };
  }
}
