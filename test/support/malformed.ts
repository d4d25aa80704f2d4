import http from 'node:http';

import type { OpenApiDocument } from '../../src/api/openapi/build.js';
import type { ContractAnswer, ContractChecker } from './contract.js';

/** A small seeded generator (mulberry32): the same seed gives the same requests. */
export class Random {
  constructor(private state: number) {}

  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  hex(length: number): string {
    return Array.from({ length }, () => this.int(16).toString(16)).join('');
  }
}

export interface MalformedRequest {
  /** What was done to it, to tell one case from another in a failure. */
  label: string;
  method: string;
  /** Sent as is: already percent-encoded where it should be, and malformed where meant. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

type Json = Record<string, any>;
type Kind = (operation: Operation, random: Random) => MalformedRequest | undefined;

interface Operation {
  method: string;
  template: string;
  op: Json;
  schema?: Json;
  example?: unknown;
}

/** Real values for path parameters, by `<first path segment>.<parameter>`: used only in reads. */
export type KnownValues = Record<string, string>;

/**
 * Makes malformed requests for the operations of a document. Every request meant for a write
 * is wrong in a way its route must refuse (checked against the documented request schema
 * where it is a body), so none of them may change anything:
 * - bodies: a wrong type, an unknown key, a missing required field, a string over its limit or
 *   against its pattern, not an object at all, or JSON that does not parse;
 * - a valid body under the wrong content type, a bad `Idempotency-Key` or a bad token;
 * - bad path parameters and bad query values (wrong types, out-of-range paging, unknown keys);
 * - methods a path does not take.
 * Paths stay ASCII and under 8 KB: longer or raw non-ASCII request lines are refused by Node's
 * HTTP parser (431, 400 with no body) before kitter sees them.
 */
export class MalformedRequests {
  private readonly operations: Operation[];

  constructor(
    private readonly doc: OpenApiDocument,
    private readonly checker: ContractChecker,
    private readonly token: string,
    private readonly known: KnownValues,
  ) {
    this.operations = Object.entries(doc.paths).flatMap(([template, methods]) =>
      Object.entries(methods).map(([method, op]) => {
        const media = (op.requestBody as Json | undefined)?.content?.['application/json'];
        return { method, template, op, schema: media?.schema, example: media?.example };
      }),
    );
  }

  /** `count` requests: first one of each kind for each operation, then a weighted mix. */
  generate(random: Random, count: number): MalformedRequest[] {
    const kinds = this.operations.flatMap((operation) =>
      this.kindsFor(operation).map(([kind, weight]) => ({ operation, kind, weight })),
    );
    const mix = kinds.flatMap((entry) => Array<typeof entry>(entry.weight).fill(entry));

    const requests: MalformedRequest[] = [];
    for (let i = 0; requests.length < count && i < count * 3; i++) {
      const { operation, kind } = i < kinds.length ? kinds[i] : random.pick(mix);
      const request = kind(operation, random);
      if (request) requests.push(request);
    }
    return requests;
  }

  /** The kinds of request that fit an operation, each with how often it comes up. */
  private kindsFor(operation: Operation): Array<[Kind, number]> {
    const kinds: Array<[Kind, number]> = [
      [this.wrongMethod, 1],
      [this.badToken, 1],
    ];
    if (operation.schema) {
      kinds.push([this.badBody, 8], [this.badJson, 2], [this.wrongContentType, 2]);
      if (operation.op.parameters?.some((p: Json) => p.$ref?.endsWith('IdempotencyKey'))) {
        kinds.push([this.badIdempotencyKey, 1]);
      }
    }
    if (operation.template.includes('{')) kinds.push([this.badPathParameter, 4]);
    if (this.parameters(operation, 'query').length > 0) kinds.push([this.badQuery, 6]);
    if (operation.method === 'get') kinds.push([this.junkQuery, 1]);
    return kinds.map(([kind, weight]) => [kind.bind(this), weight]);
  }

  // --- kinds of malformed requests ---

  private badBody(operation: Operation, random: Random): MalformedRequest | undefined {
    for (let attempt = 0; attempt < 10; attempt++) {
      const body = structuredClone(operation.example) as unknown;
      const noise = random.int(3);
      let mutated: unknown = body;
      for (let i = 0; i < noise; i++) mutated = this.addNoise(mutated, operation.schema!, random);
      const [label, result] = this.violate(mutated, operation.schema!, random);

      // Only a body the documented schema refuses: the route must refuse it too.
      if (result === undefined || !this.checker.validate(operation.schema, result)) continue;
      return this.request(operation, random, `body: ${label}`, {
        body: JSON.stringify(result),
        headers: { 'content-type': 'application/json', ...this.preferJunk(random) },
        reads: true,
      });
    }
    return undefined;
  }

  private badJson(operation: Operation, random: Random): MalformedRequest {
    const text = JSON.stringify(operation.example);
    const broken = random.pick([
      text.slice(0, 1 + random.int(text.length - 1)),
      `${text}}`,
      `${text}${text}`,
      text.replace(/"/g, "'"),
      text.replace(/}$/, ',}'),
      `\uFEFF${text.slice(0, -1)}`,
      '{'.repeat(5000),
      '['.repeat(100_000),
      'NaN',
      'null',
      '"a string"',
      '12345',
      'true',
      '',
      ' ',
      '\u0000',
    ]);
    return this.request(operation, random, `json: ${JSON.stringify(broken.slice(0, 24))}`, {
      body: broken,
      headers: { 'content-type': 'application/json' },
      reads: true,
    });
  }

  private wrongContentType(operation: Operation, random: Random): MalformedRequest {
    const type = random.pick([
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=xyz',
      'application/xml',
      'application/vnd.api+json',
      'application/octet-stream',
      'text/json',
      '*/*',
      'application',
      '',
    ]);
    const headers: Record<string, string> = type ? { 'content-type': type } : {};
    return this.request(operation, random, `content type ${JSON.stringify(type)}`, {
      body: JSON.stringify(operation.example),
      headers,
      reads: true,
    });
  }

  private badIdempotencyKey(operation: Operation, random: Random): MalformedRequest {
    const key = random.pick(['has space', 'x'.repeat(256), 'tab\there', 'x'.repeat(4000)]);
    return this.request(operation, random, `Idempotency-Key ${JSON.stringify(key.slice(0, 12))}`, {
      body: JSON.stringify(operation.example),
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      reads: true,
    });
  }

  private badToken(operation: Operation, random: Random): MalformedRequest {
    const authorization = random.pick([
      undefined,
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      'Bearer a.b.c',
      'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.e30',
      `Bearer ${this.token}x`,
      `Bearer ${this.token.slice(0, -1)}`,
      `Bearer ${this.token} ${this.token}`,
      `Bearer ${'x'.repeat(4000)}`,
      `Token ${this.token}`,
    ]);
    const body = operation.example === undefined ? undefined : JSON.stringify(operation.example);
    return this.request(operation, random, `token ${JSON.stringify(authorization)}`, {
      body,
      headers: body ? { 'content-type': 'application/json' } : {},
      authorization: authorization ?? null,
      reads: true,
    });
  }

  private badPathParameter(operation: Operation, random: Random): MalformedRequest {
    const names = this.parameters(operation, 'path').map((p) => p.name as string);
    const bad = random.pick(names);
    const junk = random.pick([
      '',
      '%00',
      '%ZZ',
      '%E0%A4%A',
      '..',
      '%2e%2e',
      '%2F',
      'a%2Fb',
      '.',
      '%20',
      '*',
      'null',
      'undefined',
      '__proto__',
      'constructor',
      '-1',
      '1e309',
      "'%20OR%201=1--",
      encodeURIComponent('ñandú'),
      encodeURIComponent('名前'),
      encodeURIComponent('🎉'),
      '0'.repeat(24),
      random.hex(24),
      `${random.hex(8)}-${random.hex(4)}-4${random.hex(3)}-a${random.hex(3)}-${random.hex(12)}`,
      'x'.repeat(300),
      'x'.repeat(4000),
    ]);
    return this.request(operation, random, `path ${bad}=${junk.slice(0, 24)}`, {
      path: { [bad]: junk },
      // Keeps a write refused even if a junk id happened to name something.
      body: operation.schema ? '{"not":"valid"}' : undefined,
      headers: operation.schema ? { 'content-type': 'application/json' } : {},
      reads: false,
    });
  }

  private badQuery(operation: Operation, random: Random): MalformedRequest {
    const parameters = this.parameters(operation, 'query');
    const parameter = random.pick(parameters);
    const name = parameter.name as string;
    const schema = (parameter.schema ?? {}) as Json;
    const encoded = encodeURIComponent(name);

    const junk: string[] = [
      `colour=blue`,
      `${encoded}=a&${encoded}=b`,
      `${encoded}[x]=1`,
      `%ZZ=1`,
      `${encoded}=%E0%A4%A`,
      `${encoded}=${'x'.repeat(5000)}`,
      'paginate[max]=0',
      'paginate[max]=101',
      'paginate[max]=1000',
      'paginate[max]=-5',
      'paginate[page]=-1',
      'paginate[page]=abc',
      'paginate[page]=1e9',
      'paginate=1',
    ];
    if (schema.type === 'integer' || schema.type === 'number') {
      for (const value of ['abc', '1.5', '-1', '1e400', '', '0x10', '99999999999999999999']) {
        junk.push(`${encoded}=${encodeURIComponent(value)}`);
      }
    }
    if (schema.type === 'boolean') {
      for (const value of ['maybe', '2', 'yes', '']) junk.push(`${encoded}=${value}`);
    }
    if (schema.pattern) junk.push(`${encoded}=${encodeURIComponent('名前 !')}`);
    const query = random.pick(junk);

    return this.request(operation, random, `query ${query.slice(0, 40)}`, {
      query,
      reads: true,
    });
  }

  /** Reads ignore what they do not know (`/health/live?x=1` is fine): only no 5xx is asked. */
  private junkQuery(operation: Operation, random: Random): MalformedRequest {
    const query = random.pick(['x=1', '%ZZ', '&&&', 'a[b][c]=d', `q=${'x'.repeat(3000)}`, '=']);
    return this.request(operation, random, `junk query ${query.slice(0, 20)}`, {
      query,
      reads: true,
    });
  }

  private wrongMethod(operation: Operation, random: Random): MalformedRequest | undefined {
    const taken = Object.keys(this.doc.paths[operation.template]);
    const others = ['put', 'patch', 'delete', 'post', 'options'].filter((m) => !taken.includes(m));
    if (others.length === 0) return undefined;

    const method = random.pick(others);
    const example = this.operations.find((o) => o.example !== undefined)?.example;
    return this.request({ ...operation, method }, random, `method ${method.toUpperCase()}`, {
      body: JSON.stringify(example ?? {}),
      headers: { 'content-type': 'application/json' },
      reads: false,
    });
  }

  // --- body mutations ---

  /** One change that the schema refuses; its label, and the body (undefined: none found). */
  private violate(body: unknown, schema: Json, random: Random): [string, unknown] {
    const slots = this.slots(body, schema);
    const objects = slots.filter((slot) => isObject(slot.value) && slot.schema.properties);
    const kind = random.int(6);

    if (kind === 0 || objects.length === 0) {
      const whole = random.pick([[], null, 42, 'text', true, [body], {}]);
      return ['not the body', whole];
    }
    if (kind === 1) {
      const slot = random.pick(objects);
      const key = random.pick([
        'colour',
        '__proto__',
        'constructor',
        'x'.repeat(300),
        '',
        '$where',
      ]);
      const value = random.pick([1, 'x', { polluted: true }, null]);
      Object.defineProperty(slot.value, key, { value, enumerable: true });
      return [`unknown key ${key.slice(0, 12)} at ${slot.path || '.'}`, body];
    }
    if (kind === 2) {
      const slot = random.pick(objects);
      const required = ((slot.schema.required ?? []) as string[]).filter((k) => k in slot.value);
      if (required.length === 0) return ['nothing required', undefined];
      const key = random.pick(required);
      delete (slot.value as Json)[key];
      return [`missing ${slot.path ? `${slot.path}.` : ''}${key}`, body];
    }

    const fields = slots.filter((slot) => slot.parent !== undefined);
    if (fields.length === 0) return ['no fields', undefined];
    const field = random.pick(fields);
    const set = (value: unknown) => ((field.parent as Json)[field.key!] = value);

    if (kind === 3 && typeof field.schema.maxLength === 'number') {
      set('x'.repeat(field.schema.maxLength + 1 + random.int(3) * 20_000));
      return [`${field.path} over ${field.schema.maxLength} characters`, body];
    }
    if (kind === 4 && typeof field.schema.pattern === 'string') {
      set(random.pick(['名前', 'has space !', '<script>', '\u0000', '../../etc/passwd', 'äöü']));
      return [`${field.path} against its pattern`, body];
    }

    // A value of another type: checked against the field's own schema.
    const candidates = [12345, -1, 1.5, true, null, {}, [], 'not-a-valid-thing', { a: 1 }, [1, 2]];
    for (let i = 0; i < 5; i++) {
      const value = random.pick(candidates);
      if (this.checker.validate(field.schema, value)) {
        set(value);
        return [`${field.path} = ${JSON.stringify(value)}`, body];
      }
    }
    return ['no wrong type found', undefined];
  }

  /** Strange but maybe valid strings in fields that take any string. */
  private addNoise(body: unknown, schema: Json, random: Random): unknown {
    const free = this.slots(body, schema).filter(
      (slot) => slot.parent && slot.schema.type === 'string' && !slot.schema.pattern,
    );
    if (free.length === 0) return body;

    const slot = random.pick(free);
    (slot.parent as Json)[slot.key!] = random.pick([
      'Ünïcødé ✓ 🎉',
      '\u202eevil',
      '<b>bold</b>',
      '${jndi:ldap://x}',
      'a\nb',
      '',
    ]);
    return body;
  }

  /** Every value in the body with the schema that governs it. */
  private slots(
    value: unknown,
    schema: Json,
    path = '',
    parent?: unknown,
    key?: string,
  ): Array<{ path: string; value: any; schema: Json; parent?: unknown; key?: string }> {
    const here = [{ path, value, schema, parent, key }];
    if (!isObject(value) || !schema.properties) return here;
    return [
      ...here,
      ...Object.entries(value).flatMap(([name, child]) => {
        const childSchema = (schema.properties as Json)[name];
        if (!childSchema) return [];
        return this.slots(child, childSchema, path ? `${path}.${name}` : name, value, name);
      }),
    ];
  }

  // --- building requests ---

  private parameters(operation: Operation, where: 'path' | 'query'): Json[] {
    return ((operation.op.parameters ?? []) as Json[]).filter((p) => p.in === where);
  }

  private request(
    operation: Operation,
    random: Random,
    label: string,
    parts: {
      path?: Record<string, string>;
      query?: string;
      body?: string;
      headers?: Record<string, string>;
      authorization?: string | null;
      /** Whether real ids may fill the path: only when the request cannot change anything. */
      reads: boolean;
    },
  ): MalformedRequest {
    const segment = operation.template.split('/')[1];
    const path = operation.template.replace(/\{([^}]+)\}/g, (_all, name: string) => {
      const given = parts.path?.[name];
      if (given !== undefined) return given;
      const real = this.known[`${segment}.${name}`];
      return real && (parts.reads || operation.method === 'get') ? real : `no-such-${name}`;
    });

    const headers: Record<string, string> = { ...parts.headers };
    if (parts.authorization !== null) {
      headers.authorization = parts.authorization ?? `Bearer ${this.token}`;
    }
    return {
      label: `${operation.method.toUpperCase()} ${operation.template}: ${label}`,
      method: operation.method.toUpperCase(),
      path: parts.query ? `${path}?${parts.query}` : path,
      headers,
      body: parts.body,
    };
  }

  private preferJunk(random: Random): Record<string, string> {
    const prefer = random.pick([undefined, 'wait=abc', 'wait=-5', 'wait=1e309', 'respond-async']);
    return prefer ? { prefer } : {};
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Sends a request exactly as given, and gives up after `timeoutMs`. */
export function send(
  baseUrl: string,
  request: MalformedRequest,
  timeoutMs: number,
): Promise<ContractAnswer> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: request.method,
        path: request.path,
        // Node frames a DELETE or OPTIONS body by nothing unless told its length.
        headers: {
          ...request.headers,
          ...(request.body === undefined
            ? {}
            : { 'content-length': String(Buffer.byteLength(request.body)) }),
        },
        signal: AbortSignal.timeout(timeoutMs),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const headers = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            for (const one of ([] as string[]).concat(value ?? [])) headers.append(name, one);
          }
          let body: unknown = text === '' ? undefined : text;
          if (/json/.test(headers.get('content-type') ?? '') && text !== '') {
            body = JSON.parse(text);
          }
          resolve({ status: response.statusCode ?? 0, headers, body });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}
