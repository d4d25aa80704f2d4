import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';

/** A running emulator: a real HTTP server on loopback (or a chosen host). */
export interface RunningServer {
  /** Base URL with no trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
}

/**
 * Starts a Koa app on an HTTP server and returns its address. `close()` ends idle keep-alive
 * connections too, so tests and the demo never hang on shutdown.
 */
export async function listen(app: Koa, options: ListenOptions = {}): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer(app.callback());
  server.keepAliveTimeout = 5_000;
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');

  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;

  return {
    url: `http://${host}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Reads a JSON request body; answers 400 itself for malformed JSON. */
export async function readJson(ctx: Koa.Context): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;

  try {
    return JSON.parse(text);
  } catch {
    ctx.throw(400, 'malformed JSON body');
  }
}

/**
 * Counts the requests an emulator answered, by `METHOD route` (the router's pattern, e.g.
 * `POST /admin/realms/:realm/users`), so tests can say "the user was created exactly once".
 */
export class CallLog {
  private readonly counts = new Map<string, number>();

  middleware(): Koa.Middleware {
    return async (ctx, next) => {
      await next();
      const route = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
      const key = `${ctx.method} ${typeof route === 'string' ? route : ctx.path}`;
      this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    };
  }

  /** How many times `METHOD route` was answered (any status). */
  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  all(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  reset(): void {
    this.counts.clear();
  }
}
