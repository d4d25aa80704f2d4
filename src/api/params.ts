import Joi from 'joi';

/** Page sizes above this are refused: each user listed costs calls to both backends. */
export const MAX_PAGE = 100;

/** Keycloak user ids: UUIDs, or `f:<provider>:<name>` for users of a federation provider. */
export const keycloakId = Joi.string()
  .pattern(/^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/)
  .messages({ 'string.pattern.base': '{{#label}} is not a user id' });

/** wac-core ids: 24 hexadecimal characters. */
export const wacId = Joi.string()
  .pattern(/^[0-9a-f]{24}$/)
  .messages({ 'string.pattern.base': '{{#label}} is not a domain id (24 hexadecimal characters)' });

/** `paginate[max]` and `paginate[page]` (0-based), as the original kitter takes them. */
export const paginate = {
  'paginate[max]': Joi.number().integer().min(1).max(MAX_PAGE).default(MAX_PAGE),
  'paginate[page]': Joi.number().integer().min(0).max(1_000_000).default(0),
};

export interface Page {
  'paginate[max]': number;
  'paginate[page]': number;
}
