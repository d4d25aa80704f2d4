import { setTimeout as sleep } from 'node:timers/promises';

import type Koa from 'koa';

import { readJson } from './server.js';

/**
 * Faults an emulator can play, set over HTTP with `PUT /_emulator/faults` (snake_case JSON, as
 * below) or in-process with `Faults.set`. Off unless set; `DELETE /_emulator/faults` resets.
 */
export interface FaultSettings {
  /** Share of matching requests (0–1) answered with `error_status`. */
  error_rate: number;
  error_status: number;
  /** Added to every matching request before it is handled. */
  latency_ms: number;
  /** Every matching request has its connection closed without an answer. */
  down: boolean;
  /** Share of matching requests (0–1) whose connection is closed without an answer. */
  drop_rate: number;
  /**
   * Share of matching requests (0–1) that are carried out, but whose answer is lost: the
   * connection closes instead. The client cannot tell a write that happened from one that
   * did not, which is what makes retries need care.
   */
  lose_answer_rate: number;
  /** A regular expression on `METHOD path` (e.g. `^POST /sapi/users`); absent: every request. */
  paths?: string;
}

const NONE: FaultSettings = {
  error_rate: 0,
  error_status: 503,
  latency_ms: 0,
  down: false,
  drop_rate: 0,
  lose_answer_rate: 0,
};

export const FAULTS_PATH = '/_emulator/faults';

/** Counts of what the faults did, for tests and chaos runs to report. */
export interface FaultCounts {
  errors: number;
  drops: number;
  lostAnswers: number;
}

export class Faults {
  private settings: FaultSettings = { ...NONE };
  private pattern: RegExp | undefined;
  readonly counts: FaultCounts = { errors: 0, drops: 0, lostAnswers: 0 };

  /** Applies a partial setting on top of the current one; throws on a bad value. */
  set(changes: Partial<FaultSettings>): FaultSettings {
    const next = { ...this.settings, ...changes };
    checkSettings(next);
    this.settings = next;
    this.pattern = next.paths ? new RegExp(next.paths) : undefined;
    return this.current();
  }

  reset(): void {
    this.settings = { ...NONE };
    this.pattern = undefined;
  }

  resetCounts(): void {
    Object.assign(this.counts, { errors: 0, drops: 0, lostAnswers: 0 });
  }

  current(): FaultSettings {
    return { ...this.settings };
  }

  /** Koa middleware: the control endpoint first, then the faults for every other request. */
  middleware(): Koa.Middleware {
    return async (ctx, next) => {
      if (ctx.path === FAULTS_PATH) return this.control(ctx);

      const s = this.settings;
      if (this.pattern && !this.pattern.test(`${ctx.method} ${ctx.path}`)) return next();

      if (s.latency_ms > 0) await sleep(s.latency_ms);

      if (s.down || (s.drop_rate > 0 && Math.random() < s.drop_rate)) {
        this.counts.drops++;
        ctx.respond = false;
        ctx.req.socket.destroy();
        return;
      }

      if (s.error_rate > 0 && Math.random() < s.error_rate) {
        this.counts.errors++;
        ctx.status = s.error_status;
        if (s.error_status === 429 || s.error_status === 503) ctx.set('Retry-After', '1');
        ctx.body = {
          error: `emulated fault: HTTP ${s.error_status}`,
          message: 'an injected fault, set with PUT /_emulator/faults',
        };
        return;
      }

      await next();

      if (s.lose_answer_rate > 0 && Math.random() < s.lose_answer_rate) {
        this.counts.lostAnswers++;
        ctx.respond = false;
        ctx.req.socket.destroy();
      }
    };
  }

  private async control(ctx: Koa.Context): Promise<void> {
    if (ctx.method === 'GET') {
      ctx.body = { faults: this.current(), counts: this.counts };
      return;
    }
    if (ctx.method === 'DELETE') {
      this.reset();
      ctx.status = 204;
      return;
    }
    if (ctx.method !== 'PUT') {
      ctx.status = 405;
      ctx.body = { error: 'use GET, PUT or DELETE' };
      return;
    }

    const body = await readJson(ctx);
    try {
      ctx.body = { faults: this.set(pickSettings(body)) };
    } catch (err) {
      ctx.status = 400;
      ctx.body = { error: (err as Error).message };
    }
  }
}

function pickSettings(body: unknown): Partial<FaultSettings> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Error('the body must be a JSON object of fault settings');
  }
  const known = new Set([...Object.keys(NONE), 'paths']);
  const unknown = Object.keys(body).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new Error(`unknown fault settings: ${unknown.join(', ')}`);
  return body as Partial<FaultSettings>;
}

function checkSettings(s: FaultSettings): void {
  const share = (name: keyof FaultSettings, v: unknown) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1))
      throw new Error(`${name} must be from 0 to 1`);
  };
  share('error_rate', s.error_rate);
  share('drop_rate', s.drop_rate);
  share('lose_answer_rate', s.lose_answer_rate);
  if (!Number.isInteger(s.error_status) || s.error_status < 400 || s.error_status > 599) {
    throw new Error('error_status must be an HTTP error status (400–599)');
  }
  if (!Number.isInteger(s.latency_ms) || s.latency_ms < 0 || s.latency_ms > 60_000) {
    throw new Error('latency_ms must be a whole number from 0 to 60000');
  }
  if (typeof s.down !== 'boolean') throw new Error('down must be true or false');
  if (s.paths !== undefined) {
    if (typeof s.paths !== 'string') throw new Error('paths must be a regular expression string');
    new RegExp(s.paths);
  }
}
