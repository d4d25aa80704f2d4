/**
 * The baseline of the API latency benchmark, in a process of its own: a bare Koa app whose one
 * route parses the JSON body and validates it with kitter's own schema for `POST /users`, then
 * answers 202 with a job-like body, without queueing anything.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';
import { koaBody } from 'koa-body';

import { userCreateBody } from '../src/api/routes/users.js';
import { validate } from '../src/api/validate.js';
import { serveChild } from './support.js';

const app = new Koa();
app.silent = true;
app.use(koaBody({ json: true, jsonStrict: true, jsonLimit: '1mb', multipart: false }));
app.use(async (ctx) => {
  if (ctx.method !== 'POST' || ctx.path !== '/users') {
    ctx.status = 404;
    return;
  }
  try {
    validate(userCreateBody, ctx.request.body);
  } catch {
    ctx.status = 400;
    ctx.body = { error: 'the request body is invalid', code: 'validation_failed' };
    return;
  }
  const id = randomUUID();
  ctx.status = 202;
  ctx.set('Location', `/jobs/${id}`);
  ctx.body = { job: { id, type: 'user.create', state: 'queued', progress: 0 } };
});

const server = http.createServer(app.callback());
server.listen(0, '127.0.0.1');
await once(server, 'listening');

serveChild(async () => (server.address() as AddressInfo).port);
