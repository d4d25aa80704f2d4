import type Joi from 'joi';

import { errors } from '../errors.js';

/**
 * Validates input against a schema: every problem is reported (path and message), unknown
 * keys are refused and named, and the converted value is returned.
 */
export function validate<T>(schema: Joi.Schema, value: unknown, what = 'the request body'): T {
  const { value: valid, error } = schema.validate(value, {
    abortEarly: false,
    convert: true,
    errors: { wrap: { label: false } },
  });
  if (!error) return valid as T;

  const details = error.details.map((detail) => ({
    path: detail.path.join('.'),
    message: detail.message,
  }));
  const first = details[0];
  // Joi's messages name the field already, except for some about the whole value.
  const where = first.path && !first.message.startsWith(first.path) ? `${first.path}: ` : '';
  const more = details.length > 1 ? ` (and ${details.length - 1} more problems)` : '';
  throw errors.validation(`${what} is invalid: ${where}${first.message}${more}`, details);
}

/**
 * Validates a write's JSON body; a request without one (no bytes at all) is refused as such,
 * where a schema alone would take the missing body for an empty one.
 */
export function validateBody<T>(schema: Joi.Schema, body: unknown): T {
  if (body === undefined) {
    throw errors.validation('the request body is missing: send a JSON object');
  }
  return validate<T>(schema, body);
}
