import type { OpenApiDocument, OpenApiOperation } from './build.js';
import type { JsonSchema } from './schemas.js';

/**
 * The reference page at `/docs`, rendered from the OpenAPI document alone: plain HTML and a
 * little CSS, nothing loaded from elsewhere, so it works where the service has no internet.
 */
export function renderDocsPage(doc: OpenApiDocument): string {
  const operations = operationsOf(doc);
  const tags = [...new Set(operations.map(({ operation }) => operation.tags[0]))];

  const nav = tags
    .map((tag) => {
      const links = operations
        .filter(({ operation }) => operation.tags[0] === tag)
        .map(
          ({ method, path, operation }) =>
            `<li><a href="#${attr(operation.operationId)}">${badge(method)} ` +
            `<code>${esc(path)}</code></a></li>`,
        );
      return `<h3>${esc(tag)}</h3><ul>${links.join('')}</ul>`;
    })
    .join('');

  const sections = operations.map((entry) => operationSection(doc, entry)).join('\n');
  const schemaSections = Object.entries(doc.components.schemas)
    .map(
      ([name, schema]) =>
        `<section id="schema-${attr(name)}"><h3>${esc(name)}</h3>` +
        `${prose(schema.description)}${fieldTable(schema, { skipDescription: true })}</section>`,
    )
    .join('\n');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)} API ${esc(doc.info.version)}</title>
<style>${CSS}</style>
</head>
<body>
<nav><h2><a href="#top">${esc(doc.info.title)} ${esc(doc.info.version)}</a></h2>${nav}
<h3><a href="#schemas">schemas</a></h3>
<p><a href="/openapi.json">openapi.json</a></p></nav>
<main>
<header id="top"><h1>${esc(doc.info.title)} API</h1>${prose(doc.info.description)}</header>
${sections}
<h2 id="schemas">Schemas</h2>
${schemaSections}
</main>
</body>
</html>
`;
}

interface Entry {
  method: string;
  path: string;
  operation: OpenApiOperation;
}

function operationsOf(doc: OpenApiDocument): Entry[] {
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ method, path, operation })),
  );
}

function operationSection(doc: OpenApiDocument, { method, path, operation }: Entry): string {
  const open = Array.isArray(operation.security) && operation.security.length === 0;
  const auth = open ? 'No token needed.' : 'Needs <code>Authorization: Bearer</code>.';
  const parts = [
    `<section class="operation" id="${attr(operation.operationId)}">`,
    `<h2>${badge(method)} <code>${esc(path)}</code></h2>`,
    `<p class="summary">${esc(operation.summary)}</p>`,
    prose(operation.description),
    `<p class="auth">${auth}</p>`,
  ];

  const parameters = (operation.parameters ?? []).map((p) => resolve(doc, p));
  if (parameters.length > 0) {
    const rows = parameters.map((p) => {
      const schema = (p.schema ?? {}) as JsonSchema;
      return (
        `<tr><td><code>${esc(String(p.name))}</code></td><td>${esc(String(p.in))}</td>` +
        `<td>${typeOf(schema)}</td><td>${p.required ? 'yes' : ''}</td>` +
        `<td>${inline(String(p.description ?? ''))}${rules(schema)}</td></tr>`
      );
    });
    parts.push(
      '<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th><th>required</th>' +
        `<th>meaning</th></tr>${rows.join('')}</table>`,
    );
  }

  const body = operation.requestBody;
  if (body) {
    const [type, media] = Object.entries(body.content as Record<string, JsonSchema>)[0];
    parts.push(`<h3>Body <small>${esc(type)}</small></h3>`, prose(body.description as string));
    parts.push(fieldTable(media.schema as JsonSchema));
    if (media.example !== undefined) parts.push(example('Example request', media.example));
  }

  parts.push('<h3>Answers</h3><table><tr><th>status</th><th>meaning</th><th>body</th></tr>');
  const examples: string[] = [];
  for (const [status, raw] of Object.entries(operation.responses)) {
    const response = resolve(doc, raw);
    const content = response.content as Record<string, JsonSchema> | undefined;
    const [type, media] = content ? Object.entries(content)[0] : ['', undefined];
    const headers = Object.keys((response.headers ?? {}) as object);
    const shape = media ? `${typeOf(media.schema as JsonSchema)} <small>${esc(type)}</small>` : '';
    const named = headers.length ? `<br>headers: ${headers.map(code).join(', ')}` : '';
    parts.push(
      `<tr><td>${esc(status)}</td><td>${inline(String(response.description))}${named}</td>` +
        `<td>${shape}</td></tr>`,
    );
    if (media?.example !== undefined) {
      examples.push(example(`Example answer ${status}`, media.example));
    }
  }
  parts.push('</table>', ...examples, '</section>');
  return parts.filter(Boolean).join('\n');
}

/** Rows for the fields of an object schema, nested objects flattened to dotted names. */
function fieldTable(schema: JsonSchema, options: { skipDescription?: boolean } = {}): string {
  const rows = fieldRows(schema, '');
  if (rows.length === 0) {
    const only = options.skipDescription ? '' : prose(schema.description);
    return `${only}<p>${typeOf(schema)}${rules(schema)}</p>`;
  }
  return (
    '<table><tr><th>field</th><th>type</th><th>required</th><th>rules and meaning</th></tr>' +
    `${rows.join('')}</table>`
  );
}

function fieldRows(schema: JsonSchema, prefix: string): string[] {
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  if (!properties) return [];

  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(properties).flatMap(([name, field]) => {
    const path = prefix ? `${prefix}.${name}` : name;
    const row =
      `<tr><td><code>${esc(path)}</code></td><td>${typeOf(field)}</td>` +
      `<td>${required.has(name) ? 'yes' : ''}</td>` +
      `<td>${inline(String(field.description ?? ''))}${rules(field)}</td></tr>`;
    return [row, ...fieldRows(field, path)];
  });
}

function typeOf(schema: JsonSchema | undefined): string {
  if (!schema) return 'any';
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.split('/').pop()!;
    return `<a href="#schema-${attr(name)}">${esc(name)}</a>`;
  }
  if ('const' in schema) return `<code>${esc(JSON.stringify(schema.const))}</code>`;
  if (Array.isArray(schema.enum)) {
    return `one of ${schema.enum.map((value) => code(JSON.stringify(value))).join(', ')}`;
  }
  const alternatives = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (alternatives) return alternatives.map(typeOf).join(' or ');

  const types = ([] as unknown[]).concat(schema.type ?? []).map(String);
  // joi's any() comes out as every JSON type at once.
  if (types.length === 0 || types.length >= 6) return 'any';
  return types
    .map((type) => (type === 'array' ? `array of ${typeOf(schema.items as JsonSchema)}` : type))
    .join(' or ');
}

const RULES: Array<[string, string]> = [
  ['minLength', 'at least {} characters'],
  ['maxLength', 'at most {} characters'],
  ['minimum', 'at least {}'],
  ['maximum', 'at most {}'],
  ['minItems', 'at least {} items'],
  ['maxItems', 'at most {} items'],
  ['minProperties', 'at least {} fields'],
  ['maxProperties', 'at most {} fields'],
  ['pattern', 'matches {}'],
  ['format', 'format {}'],
  ['default', 'default {}'],
];

function rules(schema: JsonSchema): string {
  const said = RULES.filter(([keyword]) => schema[keyword] !== undefined).map(([keyword, text]) => {
    const value = schema[keyword];
    const shown =
      keyword === 'pattern' || keyword === 'default' ? code(shownValue(value)) : esc(value);
    return text.replace('{}', shown);
  });
  if (schema.uniqueItems) said.push('no repeats');
  if (schema.additionalProperties === false && schema.properties) said.push('no other fields');
  if (schema.deprecated) said.push('deprecated');
  return said.length ? ` <span class="rules">${said.join('; ')}</span>` : '';
}

function shownValue(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function resolve(doc: OpenApiDocument, value: unknown): JsonSchema {
  let current = value as JsonSchema;
  while (typeof current?.$ref === 'string') {
    current = current.$ref
      .slice(2)
      .split('/')
      .reduce<unknown>((at, key) => (at as Record<string, unknown>)[key], doc) as JsonSchema;
  }
  return current;
}

function example(title: string, value: unknown): string {
  return `<details open><summary>${esc(title)}</summary><pre>${esc(
    JSON.stringify(value, null, 2),
  )}</pre></details>`;
}

function badge(method: string): string {
  return `<span class="method ${attr(method)}">${esc(method.toUpperCase())}</span>`;
}

/** Paragraphs and `- ` lists of a description, with `code` spans. */
function prose(text: unknown): string {
  if (typeof text !== 'string' || text === '') return '';
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const lines = block.split('\n');
      if (lines.every((line) => line.startsWith('- '))) {
        return `<ul>${lines.map((line) => `<li>${inline(line.slice(2))}</li>`).join('')}</ul>`;
      }
      return `<p>${inline(block)}</p>`;
    })
    .join('');
}

function inline(text: string): string {
  return esc(text).replace(/`([^`]+)`/g, '<code>$1</code>');
}

function code(text: string): string {
  return `<code>${esc(text)}</code>`;
}

function esc(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

function attr(value: string): string {
  return esc(value).replace(/[^A-Za-z0-9_-]/g, '-');
}

const CSS = `
body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1d2330;display:flex}
nav{position:sticky;top:0;height:100vh;overflow:auto;width:19rem;font-size:.9rem;flex:none;
padding:1rem;background:#f3f5f8;border-right:1px solid #dde2ea;box-sizing:border-box}
nav ul{list-style:none;padding:0;margin:0 0 .5rem}
nav li{margin:.2rem 0;white-space:nowrap}
nav h3{font-size:.8rem;text-transform:uppercase;color:#5b6578;margin:1rem 0 .3rem}
nav a{color:inherit;text-decoration:none}
main{padding:1rem 2rem 4rem;max-width:60rem;min-width:0}
section{border-top:1px solid #dde2ea;padding-top:.5rem;margin-top:1.5rem}
h2{font-size:1.2rem}h3{font-size:1rem;margin-bottom:.3rem}
.summary{font-weight:600}.auth{color:#5b6578}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #dde2ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f3f5f8;padding:.6rem;overflow:auto;border-radius:4px}
.rules{color:#5b6578}
.method{display:inline-block;min-width:3.6rem;text-align:center;border-radius:3px;color:#fff;
font:600 .75rem/1.6 ui-monospace,monospace;padding:0 .3rem}
.get{background:#2f7d4f}.post{background:#2b5fad}.patch{background:#a06a12}
.put{background:#7a4fb0}.delete{background:#b03a3a}
`;
