import Joi from 'joi';

import { errors } from '../errors.js';
import {
  splitSecrets,
  userCreateSchema,
  type UserInput,
  type UserSecrets,
  type UserSpec,
} from '../model/users.js';

/** The columns an import file may have; matched case-insensitively, spaces around ignored. */
export const COLUMNS = [
  'username',
  'email',
  'first_name',
  'last_name',
  'password',
  'temporary',
  'enabled',
  'email_verified',
  'domain',
  'phone_number',
  'capabilities',
  'sip_username',
  'sip_password',
  'sip_domain',
  'sip_auth_proxy',
] as const;
export type Column = (typeof COLUMNS)[number];

export const REQUIRED_COLUMNS: Column[] = ['username', 'domain'];

/** Columns never written back anywhere: not to the error report, not to logs, not to Redis. */
export const SECRET_COLUMNS: ReadonlySet<Column> = new Set(['password', 'sip_password']);

/** Where each column sits in the file's rows. */
export type Layout = Array<[Column, number]>;

/**
 * Reads the header: every column must be known, and `username` and `domain` must be there.
 * Empty names at the end are the trailing delimiters spreadsheets add, and are ignored.
 */
export function readHeader(header: string[]): Layout {
  const names = header.map((name) => name.trim().toLowerCase());
  while (names.length > 0 && names[names.length - 1] === '') names.pop();

  const known = new Set<string>(COLUMNS);
  const unknown = names.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    const shown = unknown.map((name) => (name === '' ? '(an empty name)' : `"${name}"`));
    throw errors.validation(
      `unknown column ${shown.join(', ')}; the columns are ${COLUMNS.join(', ')}`,
      unknown.map((name) => ({ path: 'header', message: `unknown column "${name}"` })),
    );
  }

  const twice = names.filter((name, i) => names.indexOf(name) !== i);
  if (twice.length > 0) throw errors.validation(`column "${twice[0]}" appears twice`);

  const missing = REQUIRED_COLUMNS.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    throw errors.validation(`the file has no ${missing.map((m) => `"${m}"`).join(' or ')} column`);
  }
  return names.map((name, index) => [name as Column, index]);
}

/** A row's cells by column, as in the file (only the columns the file has). */
export type RowCells = Partial<Record<Column, string>>;

export function cellsOf(layout: Layout, cells: string[]): RowCells {
  const row: RowCells = {};
  for (const [column, index] of layout) row[column] = cells[index] ?? '';
  return row;
}

/** The cells of a row without its secrets, as the error report and job data keep them. */
export function publicCells(row: RowCells): RowCells {
  const copy: RowCells = {};
  for (const [column, value] of Object.entries(row) as Array<[Column, string]>) {
    if (!SECRET_COLUMNS.has(column)) copy[column] = value;
  }
  return copy;
}

export type RowResult = { user: UserInput } | { reason: string };

/**
 * The yes and no of a spreadsheet's cell, in any case: what people type, and the words a
 * Spanish Excel writes for TRUE and FALSE.
 */
const flag = Joi.boolean()
  .truthy('yes', 'y', '1', 'sí', 'si', 'verdadero')
  .falsy('no', 'n', '0', 'falso')
  .sensitive(false);

const FLAG_WORDS = 'true/false, yes/no, 1/0, sí/no, verdadero/falso';

/**
 * A row as a `POST /users` body, checked with the same schema. Empty cells count as absent;
 * `capabilities` are separated by `|`; the `sip_*` columns make the SIP mapping.
 */
export function userOfRow(row: RowCells, extraCells: string[]): RowResult {
  if (extraCells.some((cell) => cell.trim() !== '')) {
    return { reason: 'the row has more cells than the header has columns' };
  }

  const value = (column: Column) => {
    const text = row[column]?.trim();
    return text === '' ? undefined : text;
  };
  // A cell that is no yes or no is named with the words that are, whether or not the row uses
  // it (`temporary` without a password).
  const flagProblems: string[] = [];
  const bool = (column: Column) => {
    const text = value(column);
    if (text === undefined) return undefined;
    // "sí" as macOS may write it, an i and a combining accent, is the same word.
    const { value: parsed, error } = flag.validate(text.normalize('NFC'));
    if (error) flagProblems.push(`${column}: "${text}" is not one of ${FLAG_WORDS}`);
    return error ? undefined : (parsed as boolean);
  };
  const temporary = bool('temporary');

  const sipUsername = value('sip_username');
  const sipPassword = row.sip_password === '' ? undefined : row.sip_password;
  const sipMapping =
    sipUsername !== undefined || sipPassword !== undefined || value('sip_domain')
      ? {
          username: sipUsername,
          password: sipPassword,
          sip_domain: value('sip_domain'),
          sip_auth_proxy: value('sip_auth_proxy'),
        }
      : undefined;
  const password = row.password === '' ? undefined : row.password;
  const capabilities = value('capabilities')
    ?.split('|')
    .map((capability) => capability.trim())
    .filter((capability) => capability !== '');

  const candidate = dropUndefined({
    username: value('username'),
    email: value('email'),
    first_name: value('first_name'),
    last_name: value('last_name'),
    enabled: bool('enabled'),
    email_verified: bool('email_verified'),
    credentials: password !== undefined ? dropUndefined({ password, temporary }) : undefined,
    attributes: dropUndefined({
      domain: value('domain'),
      phone_number: value('phone_number'),
      capabilities,
      sip_mapping: sipMapping && dropUndefined(sipMapping),
    }),
  });

  const { value: user, error } = userCreateSchema.validate(candidate, {
    abortEarly: false,
    convert: true,
    errors: { wrap: { label: false } },
  });
  if (error || flagProblems.length > 0) {
    return { reason: [...flagProblems, ...(error ? [describe(error)] : [])].join('; ') };
  }
  return { user: user as UserInput };
}

/**
 * The user an import row's job creates, made again from the row's cells (kept in the job
 * without the passwords) and its opened passwords: the same rules, so the same user the
 * import accepted.
 */
export function userOfImportRow(cells: RowCells, secrets: UserSecrets): UserSpec {
  const row: RowCells = {
    ...cells,
    password: secrets.password ?? '',
    sip_password: secrets.sipPassword ?? '',
  };
  const result = userOfRow(row, []);
  if ('reason' in result) throw errors.validation(`the import row is invalid: ${result.reason}`);
  return splitSecrets(result.user).spec;
}

/** Joi's messages name fields by the body's paths; the report names the file's columns. */
const COLUMN_OF: Record<string, Column> = {
  'credentials.password': 'password',
  'credentials.temporary': 'temporary',
  'attributes.domain': 'domain',
  'attributes.phone_number': 'phone_number',
  'attributes.sip_mapping.username': 'sip_username',
  'attributes.sip_mapping.password': 'sip_password',
  'attributes.sip_mapping.sip_domain': 'sip_domain',
  'attributes.sip_mapping.sip_auth_proxy': 'sip_auth_proxy',
};

function describe(error: Joi.ValidationError): string {
  return error.details
    .map((detail) => {
      const path = detail.path.join('.');
      const column =
        COLUMN_OF[path] ?? (path.startsWith('attributes.capabilities') ? 'capabilities' : path);
      const message = detail.message.startsWith(path)
        ? detail.message.slice(path.length).trim()
        : detail.message;
      return `${column}: ${message}`;
    })
    .join('; ');
}

/** A copy without the undefined fields (deleting them would slow every later use). */
function dropUndefined<T extends Record<string, unknown>>(object: T): T {
  const kept: Record<string, unknown> = {};
  for (const key of Object.keys(object)) if (object[key] !== undefined) kept[key] = object[key];
  return kept as T;
}
