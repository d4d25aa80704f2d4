import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { RedisClient } from '../../redis.js';
import type { Caller } from '../auth.js';

/** How long a dashboard session lasts at most; a Keycloak token's own expiry ends it sooner. */
export const SESSION_S = 8 * 3600;

export interface AdminSession {
  caller: Caller;
  /** The digest of the static token it was opened with, to end it when that token goes. */
  tokenDigest?: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/**
 * Dashboard sessions, kept in Redis so that every API process knows them and a logout ends
 * them everywhere. The browser holds `<id>.<HMAC of id>`: the HMAC turns away made-up ids
 * before Redis is asked, and Redis holds only a digest of the id, so what Redis holds is not
 * enough to make a cookie. The API token itself is never kept.
 */
export class AdminSessions {
  private readonly key: Buffer;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    secretKey: string,
  ) {
    // A key of its own, derived from the secret key, so a session cookie says nothing about
    // the key that seals job data.
    this.key = createHmac('sha256', secretKey).update('kitter admin session').digest();
  }

  /** Opens a session and answers the cookie value and how long it lasts, in seconds. */
  async open(session: Omit<AdminSession, 'expiresAt'>, lifetimeS = SESSION_S) {
    const seconds = Math.max(1, Math.floor(Math.min(lifetimeS, SESSION_S)));
    const id = randomBytes(24).toString('base64url');
    const record: AdminSession = { ...session, expiresAt: Date.now() + seconds * 1000 };

    await this.redis.set(this.keyOf(id), JSON.stringify(record), 'EX', seconds);
    return { cookie: `${id}.${this.sign(id)}`, seconds };
  }

  /** The session a cookie names, while it lasts. */
  async find(cookie: string | undefined): Promise<AdminSession | undefined> {
    const id = this.verify(cookie);
    if (!id) return undefined;

    const stored = await this.redis.get(this.keyOf(id));
    if (!stored) return undefined;
    const session = JSON.parse(stored) as AdminSession;
    return session.expiresAt > Date.now() ? session : undefined;
  }

  async close(cookie: string | undefined): Promise<void> {
    const id = this.verify(cookie);
    if (id) await this.redis.del(this.keyOf(id));
  }

  /** The id in a cookie whose HMAC is right, else undefined. */
  private verify(cookie: string | undefined): string | undefined {
    const match = /^([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{43})$/.exec(cookie ?? '');
    if (!match) return undefined;

    const expected = Buffer.from(this.sign(match[1]));
    const given = Buffer.from(match[2]);
    return timingSafeEqual(expected, given) ? match[1] : undefined;
  }

  private sign(id: string): string {
    return createHmac('sha256', this.key).update(id).digest('base64url');
  }

  private keyOf(id: string): string {
    return `${this.prefix}:admin-session:${createHash('sha256').update(id).digest('hex')}`;
  }
}
