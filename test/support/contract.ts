import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

import type { OpenApiDocument, OpenApiOperation } from '../../src/api/openapi/build.js';
import { openApiDocument } from '../../src/api/openapi.js';
import type { Config } from '../../src/config.js';

// ajv-formats is CommonJS with `exports.default`; under NodeNext its default import is the
// module object, whose `default` is the plugin.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** An answer as the tests see it: the body parsed when it is JSON, else its text. */
export interface ContractAnswer {
  status: number;
  headers: Headers;
  body: unknown;
}

export class ContractError extends Error {
  constructor(problems: string[]) {
    super(`the answer breaks /openapi.json:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ContractError';
  }
}

type Json = Record<string, any>;

/**
 * Checks real answers against the document: the operation that the method and path name, the
 * status among its documented answers, the required headers, the content type, and the body
 * against the answer's schema. An answer for a path or method the document does not have may
 * only be an error, in the error shape.
 */
export class ContractChecker {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  /** Where each object of the document sits, to compile a schema by its place in it. */
  private readonly pointers = new Map<unknown, string>();
  private readonly templates: Array<{ template: string; pattern: RegExp; literals: number }>;

  constructor(readonly doc: OpenApiDocument) {
    addFormats(this.ajv);
    // Only the schemas within are compiled, each by its JSON pointer; `openapi`, `info`,
    // `paths` and the rest are what holds them.
    this.ajv.addVocabulary(['openapi', 'info', 'paths', 'components', 'tags']);
    this.ajv.addVocabulary(['security', 'jsonSchemaDialect', 'servers', 'webhooks']);
    this.ajv.addSchema(doc as object, 'kitter');
    this.place(doc, '#');

    this.templates = Object.keys(doc.paths)
      .map((template) => ({
        template,
        pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`),
        literals: template.split('/').filter((part) => part && !part.startsWith('{')).length,
      }))
      // `/users/count` must win over `/users/{id}`.
      .sort((a, b) => b.literals - a.literals);
  }

  /** What is wrong with an answer; empty when it keeps the contract. */
  problems(method: string, url: string, answer: ContractAnswer): string[] {
    const path = url.split('?')[0].replace(/(.)\/+$/, '$1');
    const verb = method.toUpperCase();
    const template = this.templates.find((entry) => entry.pattern.test(path))?.template;
    const operation = template
      ? this.doc.paths[template][verb === 'HEAD' ? 'get' : verb.toLowerCase()]
      : undefined;
    const where = `${verb} ${template ?? path} answered ${answer.status}`;

    if (!operation) {
      if (answer.status >= 400) return this.check(where, '#/components/schemas/Error', answer);
      if (verb === 'OPTIONS') return [];
      return [`${where}, but the document has no such operation`];
    }
    return this.checkOperation(where, operation, verb, answer);
  }

  private checkOperation(
    where: string,
    operation: OpenApiOperation,
    verb: string,
    answer: ContractAnswer,
  ): string[] {
    const raw = operation.responses[String(answer.status)];
    if (!raw) {
      const documented = Object.keys(operation.responses).join(', ');
      return [`${where}, which is not among its documented answers (${documented})`, said(answer)];
    }

    const response = this.resolve(raw);
    const problems: string[] = [];
    for (const [name, header] of Object.entries((response.headers ?? {}) as Json)) {
      const spec = this.resolve(header);
      const value = answer.headers.get(name);
      if (value === null) {
        if (spec.required) problems.push(`${where} without the header ${name}`);
        continue;
      }
      const problem = this.validate(spec.schema, value);
      if (problem) problems.push(`${where} with header ${name}: ${value}: ${problem}`);
    }

    const content = response.content as Json | undefined;
    const empty = answer.body === undefined || answer.body === '';
    if (!content || verb === 'HEAD') {
      if (!empty && verb !== 'HEAD') problems.push(`${where} with a body; none is documented`);
      return problems;
    }

    const type = (answer.headers.get('content-type') ?? '').split(';')[0].trim();
    const media = content[type];
    if (!media) {
      const expected = Object.keys(content).join(', ');
      return [...problems, `${where} as ${type || 'no content type'}, not ${expected}`];
    }
    return [...problems, ...this.check(where, media.schema, answer)];
  }

  private check(where: string, schema: unknown, answer: ContractAnswer): string[] {
    const problem = this.validate(schema, answer.body);
    return problem ? [`${where} with a body that ${problem}`, said(answer)] : [];
  }

  /**
   * Why a value does not match a schema of the document (the schema object itself, or its JSON
   * pointer), or undefined when it does.
   */
  validate(schema: unknown, value: unknown): string | undefined {
    const validator = this.compile(schema);
    if (validator(value)) return undefined;
    return this.ajv.errorsText(validator.errors, { dataVar: 'it', separator: '; ' });
  }

  /** Compiles a schema by its place in the document, so its `$ref`s resolve there. */
  private compile(schema: unknown): ValidateFunction {
    const pointer = typeof schema === 'string' ? schema : this.pointers.get(schema);
    if (!pointer) throw new Error(`not a schema of the document: ${JSON.stringify(schema)}`);

    let validator = this.compiled.get(pointer);
    if (!validator) {
      validator = this.ajv.getSchema(`kitter${pointer}`);
      if (!validator) throw new Error(`the document has no schema at ${pointer}`);
      this.compiled.set(pointer, validator);
    }
    return validator;
  }

  private place(value: unknown, pointer: string): void {
    if (typeof value !== 'object' || value === null || this.pointers.has(value)) return;
    this.pointers.set(value, pointer);
    for (const [key, child] of Object.entries(value)) {
      const escaped = key.replace(/~/g, '~0').replace(/\//g, '~1');
      this.place(child, `${pointer}/${encodeURIComponent(escaped)}`);
    }
  }

  private resolve(value: unknown): Json {
    let current = value as Json;
    while (typeof current?.$ref === 'string') {
      current = pointerGet(this.doc, current.$ref);
    }
    return current;
  }
}

/** The value at a local JSON pointer (`#/components/schemas/User`) of a document. */
export function pointerGet(doc: unknown, ref: string): any {
  if (!ref.startsWith('#/')) throw new Error(`not a local reference: ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((part) => decodeURIComponent(part).replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<any>((at, key) => (at === undefined ? undefined : at[key]), doc);
}

function said(answer: ContractAnswer): string {
  const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
  return `the body was: ${String(body).slice(0, 600)}`;
}

const checkers = new WeakMap<Config, ContractChecker>();

/** The checker of the document that this configuration serves. */
export function contractOf(config: Config): ContractChecker {
  let checker = checkers.get(config);
  if (!checker) {
    checker = new ContractChecker(openApiDocument(config));
    checkers.set(config, checker);
  }
  return checker;
}

/** Throws a ContractError naming every way the answer breaks the document. */
export function assertContract(
  config: Config,
  method: string,
  path: string,
  answer: ContractAnswer,
): void {
  const problems = contractOf(config).problems(method, path, answer);
  if (problems.length > 0) throw new ContractError(problems);
}
