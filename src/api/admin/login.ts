import Router from '@koa/router';
import Joi from 'joi';
import { decodeJwt } from 'jose';
import type Koa from 'koa';
import { koaBody } from 'koa-body';

import { ApiError, errors } from '../../errors.js';
import { tokenDigest, type Authenticator, type Caller } from '../auth.js';
import type { ApiContext, ApiState } from '../middleware.js';
import { SESSION_S, type AdminSession, type AdminSessions } from './sessions.js';

export const BOARD_PATH = '/admin/queues';
export const LOGIN_PATH = '/admin/login';
export const LOGOUT_PATH = '/admin/logout';

const COOKIE = 'kitter_admin';
const FORM_LIMIT = '16kb';

/** The pages load nothing and run no script; the form posts to this server only. */
const PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'";

/** The login form's fields, as the page posts them. */
export const loginForm = Joi.object({
  token: Joi.string().trim().min(1).max(8192).required(),
  next: Joi.string().max(2048).allow(''),
});

/**
 * The dashboard's login for browsers: a form takes an API token (static or a Keycloak access
 * token, checked as the API checks bearer tokens) and opens a session in a cookie. Scripts
 * cannot read the cookie (HttpOnly) and other sites cannot send it (SameSite=Strict).
 */
export function adminRoutes(
  authenticator: Authenticator,
  sessions: AdminSessions,
): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get(LOGIN_PATH, async (ctx) => {
    const session = await sessionOf(ctx, sessions, authenticator);
    const next = safeNext(ctx.query.next);
    page(ctx, 200, session ? signedInPage(session.caller, next) : loginPage(next));
  });

  router.post(LOGIN_PATH, formBody(), async (ctx) => {
    const body = (ctx.request.body ?? {}) as { next?: unknown };
    const { value: form, error } = loginForm.validate(body, { convert: true });
    const next = safeNext(body.next);
    if (error) {
      page(ctx, 400, loginPage(next, 'Enter an API token.'));
      return;
    }
    const token = (form as { token: string }).token;

    let caller: Caller;
    try {
      caller = await authenticator.identify(`Bearer ${token}`);
    } catch (err) {
      if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 403)) throw err;
      const said = err.status === 401 ? 'That token is not valid.' : `${err.message}.`;
      page(ctx, err.status, loginPage(next, said));
      return;
    }

    ctx.state.caller = caller;
    const opened = await redisOr503(() =>
      sessions.open(
        {
          caller,
          tokenDigest: caller.kind === 'static-token' ? tokenDigest(token) : undefined,
        },
        caller.kind === 'keycloak' ? secondsLeft(token) : SESSION_S,
      ),
    );
    setCookie(ctx, opened.cookie, opened.seconds);
    seeOther(ctx, next);
  });

  router.post(LOGOUT_PATH, async (ctx) => {
    await redisOr503(() => sessions.close(ctx.cookies.get(COOKIE)));
    setCookie(ctx, '', 0);
    seeOther(ctx, LOGIN_PATH);
  });

  return router;
}

/**
 * Lets through to the dashboard a request with a valid bearer token or session; sends a
 * browser without either to the login page, and answers anything else 401.
 */
export function boardGuard(
  authenticator: Authenticator,
  sessions: AdminSessions,
): Koa.Middleware<ApiState> {
  return async (ctx, next) => {
    if (!underBoard(ctx.path)) return next();

    if (ctx.get('Authorization')) {
      ctx.state.caller = await authenticator.identify(ctx.get('Authorization'));
      return next();
    }
    const session = await sessionOf(ctx, sessions, authenticator);
    if (session) {
      ctx.state.caller = session.caller;
      return next();
    }

    const page = ctx.method === 'GET' && !ctx.path.startsWith(`${BOARD_PATH}/api/`);
    if (page && ctx.accepts('json', 'html') === 'html') {
      seeOther(ctx, `${LOGIN_PATH}?next=${encodeURIComponent(ctx.url)}`);
      return;
    }
    throw errors.unauthorized('a valid bearer token or a dashboard session is required');
  };
}

export function underBoard(path: string): boolean {
  return path === BOARD_PATH || path.startsWith(`${BOARD_PATH}/`);
}

async function sessionOf(
  ctx: ApiContext,
  sessions: AdminSessions,
  authenticator: Authenticator,
): Promise<AdminSession | undefined> {
  const session = await redisOr503(() => sessions.find(ctx.cookies.get(COOKIE)));
  // A session opened with a static token ends when that token is no longer configured.
  if (session?.tokenDigest && !authenticator.isStaticDigest(session.tokenDigest)) return undefined;
  return session;
}

function setCookie(ctx: ApiContext, value: string, seconds: number): void {
  ctx.cookies.set(COOKIE, value, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/admin',
    // Only over TLS that kitter itself terminates: Koa refuses a Secure cookie otherwise.
    secure: ctx.secure,
    overwrite: true,
    ...(seconds > 0 ? { maxAge: seconds * 1000 } : { expires: new Date(0) }),
  });
}

/** Where to go after logging in: a page of the dashboard, never another site. */
function safeNext(next: unknown): string {
  if (typeof next !== 'string' || !underBoard(next.split('?')[0])) return BOARD_PATH;
  return /^[A-Za-z0-9/_.%?=&-]*$/.test(next) ? next : BOARD_PATH;
}

/** Seconds until a Keycloak token expires: the session ends with it. */
function secondsLeft(token: string): number {
  const { exp } = decodeJwt(token);
  return typeof exp === 'number' ? exp - Date.now() / 1000 : SESSION_S;
}

function seeOther(ctx: ApiContext, location: string): void {
  ctx.status = 303;
  ctx.set('Location', location);
  ctx.set('Content-Security-Policy', PAGE_POLICY);
  ctx.type = 'html';
  ctx.body = `<a href="${escape(location)}">Continue</a>\n`;
}

function formBody(): Koa.Middleware<ApiState> {
  const parse = koaBody({
    urlencoded: true,
    formLimit: FORM_LIMIT,
    json: false,
    multipart: false,
    text: false,
    onError: (err) => {
      if ((err as { status?: number }).status === 413) throw errors.payloadTooLarge(FORM_LIMIT);
      throw errors.validation('the form could not be read');
    },
  });
  return async (ctx, next) => {
    const hasBody = ctx.request.length > 0 || ctx.get('Transfer-Encoding') !== '';
    if (hasBody && !ctx.is('application/x-www-form-urlencoded')) {
      throw errors.unsupportedMediaType('application/x-www-form-urlencoded');
    }
    return parse(ctx, next);
  };
}

async function redisOr503<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw errors.queueUnavailable(err);
  }
}

// --- pages ---

function page(ctx: ApiContext, status: number, html: string): void {
  ctx.status = status;
  ctx.type = 'html';
  ctx.set('Content-Security-Policy', PAGE_POLICY);
  ctx.set('Cache-Control', 'no-store');
  ctx.body = html;
}

function loginPage(next: string, error?: string): string {
  const problem = error ? `<p class="error" role="alert">${escape(error)}</p>` : '';
  return layout(
    'Sign in',
    `${problem}
    <form method="post" action="${LOGIN_PATH}">
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required>
      <input type="hidden" name="next" value="${escape(next)}">
      <button type="submit">Sign in</button>
    </form>
    <p class="note">One of the service's API tokens, or a Keycloak access token with the role
    kitter requires. The session lasts ${SESSION_S / 3600} hours at most (a Keycloak token's
    session ends when the token does).</p>`,
  );
}

function signedInPage(caller: Caller, next: string): string {
  const who =
    caller.kind === 'static-token'
      ? `API token ${caller.index}`
      : (caller.username ?? caller.subject ?? 'a Keycloak user');
  return layout(
    'Signed in',
    `<p>Signed in with ${escape(who)}.</p>
    <p><a href="${escape(next)}">Open the queue dashboard</a></p>
    <form method="post" action="${LOGOUT_PATH}"><button type="submit">Sign out</button></form>`,
  );
}

function layout(title: string, content: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>kitter · ${escape(title)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; background: #f4f5f7; color: #1d2330; margin: 0; }
  main { max-width: 26rem; margin: 12vh auto; background: #fff; padding: 2rem;
    border-radius: 8px; box-shadow: 0 1px 4px rgb(0 0 0 / 15%); }
  h1 { font-size: 1.3rem; margin-top: 0; }
  label { display: block; font-weight: 600; margin-bottom: .3rem; }
  input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }
  button { margin-top: 1rem; padding: .5rem 1.2rem; font: inherit; cursor: pointer; }
  .error { color: #a0001c; background: #fde8ec; padding: .5rem .7rem; border-radius: 4px; }
  .note { color: #5a6272; font-size: .85rem; margin-top: 1.5rem; }
</style>
</head>
<body><main><h1>kitter queues · ${escape(title)}</h1>
${content}
</main></body>
</html>
`;
}

function escape(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!,
  );
}
