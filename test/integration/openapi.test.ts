import type Router from '@koa/router';
import { Validator } from '@seriousme/openapi-schema-validator';
import { expect } from 'chai';
import type Koa from 'koa';

import { createApp } from '../../src/api/app.js';
import type { ApiDeps } from '../../src/api/deps.js';
import { openApiDocument, operations } from '../../src/api/openapi.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { ContractChecker, pointerGet } from '../support/contract.js';
import { API_TOKEN, CLIENT_SECRET, startStack, type Stack } from '../support/stack.js';

/** The configurations whose routes differ: the caller-id table is served only when enabled. */
const VARIANTS: Record<string, Record<string, string>> = {
  default: {},
  'with the htable': { KITTER_HTABLE_ENABLED: 'true' },
};

function configOf(env: Record<string, string>): Config {
  return loadConfig('api', {
    KEYCLOAK_CLIENT_SECRET: CLIENT_SECRET,
    KITTER_API_TOKENS: API_TOKEN,
    KITTER_SECRET_KEY: 'test-secret-key-0123456789',
    ...env,
  });
}

/**
 * The app as the service builds it. Route factories only keep their dependencies for later,
 * so everything but the configuration and the logger can be an empty stand-in.
 */
function appOf(config: Config): Koa {
  const deps = { config, logger: createLogger('silent') } as Partial<ApiDeps>;
  for (const name of [
    'redis',
    'gateway',
    'keycloak',
    'wac',
    'secrets',
    'domains',
    'queues',
  ] as const) {
    (deps as Record<string, unknown>)[name] = {};
  }
  return createApp(deps as ApiDeps) as unknown as Koa;
}

/**
 * Every `METHOD /path` the app's routers register, found through the middleware Koa runs:
 * `router.routes()` hands Koa a function that carries its router, whose layers hold the
 * methods and paths (`:id` there, `{id}` in OpenAPI). HEAD comes with every GET by itself.
 */
function registeredOperations(app: Koa): string[] {
  const routers = new Set<Router>();
  for (const middleware of app.middleware) {
    const router = (middleware as { router?: Router }).router;
    if (router) routers.add(router);
  }

  const found = new Set<string>();
  for (const router of routers) {
    for (const layer of router.stack) {
      if (typeof layer.path !== 'string') throw new Error(`a route by pattern: ${layer.path}`);
      const path = layer.path.replace(/:(\w+)/g, '{$1}');
      for (const method of layer.methods) {
        if (method === 'HEAD' && layer.methods.includes('GET')) continue;
        found.add(`${method} ${path}`);
      }
    }
  }
  return [...found].sort();
}

function documentedOperations(config: Config): string[] {
  const { paths } = openApiDocument(config);
  return Object.entries(paths)
    .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
}

/** Every object within a value, with its JSON pointer. */
function* walk(value: unknown, pointer = '#'): Generator<[string, Record<string, any>]> {
  if (typeof value !== 'object' || value === null) return;
  yield [pointer, value as Record<string, any>];
  for (const [key, child] of Object.entries(value)) {
    yield* walk(child, `${pointer}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`);
  }
}

describe('the OpenAPI document', () => {
  for (const [variant, env] of Object.entries(VARIANTS)) {
    describe(`${variant}`, () => {
      const config = configOf(env);

      it('documents every route the app registers, and no route it does not', () => {
        const registered = registeredOperations(appOf(config));
        const documented = documentedOperations(config);

        // Registered but not in src/api/openapi.ts, and there but served by no route.
        const undocumented = registered.filter((op) => !documented.includes(op));
        const unserved = documented.filter((op) => !registered.includes(op));
        expect({ undocumented, unserved }).to.deep.equal({ undocumented: [], unserved: [] });
        expect(registered).to.include('GET /users/{domain}/{username}');
      });

      it('is valid OpenAPI 3.1', async () => {
        const doc = openApiDocument(config);

        const result = await new Validator().validate(structuredClone(doc));

        expect(result.errors, JSON.stringify(result.errors, null, 2)).to.equal(undefined);
        expect(result.valid).to.equal(true);
        expect(doc.openapi).to.match(/^3\.1\./);
      });

      it('resolves every $ref', () => {
        const doc = openApiDocument(config);
        const broken = [...walk(doc)]
          .filter(([, node]) => typeof node.$ref === 'string')
          .filter(([, node]) => pointerGet(doc, node.$ref) === undefined)
          .map(([pointer, node]) => `${pointer}: ${node.$ref}`);

        expect(broken).to.deep.equal([]);
      });

      it('gives every operation a unique id and each path parameter its template names', () => {
        const doc = openApiDocument(config);
        const ids: string[] = [];
        const problems: string[] = [];

        for (const [path, methods] of Object.entries(doc.paths)) {
          const named = [...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]).sort();
          for (const [method, operation] of Object.entries(methods)) {
            ids.push(operation.operationId);
            const inPath = (operation.parameters ?? [])
              .map((p) => (p.$ref ? pointerGet(doc, p.$ref as string) : p))
              .filter((p) => p.in === 'path')
              .map((p) => p.name)
              .sort();
            if (JSON.stringify(inPath) !== JSON.stringify(named)) {
              problems.push(`${method} ${path}: path parameters ${inPath.join(', ')}`);
            }
          }
        }

        expect(problems).to.deep.equal([]);
        expect(new Set(ids).size).to.equal(ids.length);
      });

      it('holds only schemas that compile as strict JSON Schema 2020-12', () => {
        const doc = openApiDocument(config);
        const checker = new ContractChecker(doc);
        const schemas = [...walk(doc)].flatMap(([pointer, node]) => [
          ...(node.schema ? [[`${pointer}/schema`, node.schema]] : []),
          ...(pointer === '#/components/schemas'
            ? Object.entries(node).map(([name, schema]) => [`${pointer}/${name}`, schema])
            : []),
        ]);
        const problems: string[] = [];

        // The validator of OpenAPI documents checks their structure; ajv in strict mode also
        // refuses unknown keywords and types inside the schemas.
        for (const [pointer, schema] of schemas) {
          try {
            checker.validate(schema, null);
          } catch (err) {
            problems.push(`${pointer}: ${(err as Error).message}`);
          }
        }

        expect(schemas.length).to.be.greaterThan(50);
        expect(problems).to.deep.equal([]);
      });

      it('holds examples that match their own schemas', () => {
        const doc = openApiDocument(config);
        const checker = new ContractChecker(doc);
        const problems: string[] = [];

        for (const [pointer, node] of walk(doc)) {
          if (node.example !== undefined && node.schema) {
            const problem = checker.validate(node.schema, node.example);
            if (problem) problems.push(`${pointer}/example: ${problem}`);
          }
          if (Array.isArray(node.examples) && typeof node.type === 'string') {
            for (const example of node.examples) {
              const problem = checker.validate(node, example);
              if (problem) problems.push(`${pointer}/examples: ${problem}`);
            }
          }
        }

        expect(problems).to.deep.equal([]);
      });
    });
  }

  it('gives every request body an example that its route would accept', () => {
    const problems: string[] = [];
    for (const operation of operations.filter((op) => op.body)) {
      if (operation.example === undefined) {
        problems.push(`${operation.id} has no example`);
        continue;
      }
      const { error } = operation.body!.validate(operation.example, { abortEarly: false });
      if (error) problems.push(`${operation.id}: ${error.message}`);
    }

    expect(problems).to.deep.equal([]);
  });

  describe('as served', () => {
    let stack: Stack;

    before(async () => {
      stack = await startStack();
    });

    after(async () => {
      await stack.close();
    });

    it('answers /openapi.json without a token', async () => {
      const answer = await fetch(`${stack.service.url}/openapi.json`);

      expect(answer.status).to.equal(200);
      expect(answer.headers.get('content-type')).to.match(/^application\/json/);
      expect(await answer.json()).to.deep.equal(
        JSON.parse(JSON.stringify(openApiDocument(stack.config))),
      );
    });

    it('renders /docs from it: every operation, its parameters and examples', async () => {
      const answer = await stack.call('GET', '/docs', undefined, { authorization: '' });
      const page = answer.body as string;
      const doc = openApiDocument(stack.config);

      expect(answer.status).to.equal(200);
      for (const [path, methods] of Object.entries(doc.paths)) {
        for (const [method, operation] of Object.entries(methods)) {
          expect(page).to.include(`id="${operation.operationId}"`);
          expect(page).to.include(`${method.toUpperCase()}</span> <code>${path}</code>`);
        }
      }
      expect(page).to.include('<code>paginate[max]</code>');
      expect(page).to.include('Example request');
      expect(page).to.include('&quot;johndoe&quot;');
    });

    it('keeps /docs self-contained: no scripts, nothing from another host', async () => {
      const answer = await stack.call('GET', '/docs', undefined, { authorization: '' });
      const page = answer.body as string;

      expect(page).not.to.match(/<script|<link|<img|<iframe|@import|url\(/i);
      expect(page).not.to.match(/(src|href)="(https?:)?\/\//i);
      expect(answer.headers.get('content-security-policy')).to.equal(
        "default-src 'none'; style-src 'unsafe-inline'",
      );
    });
  });
});
