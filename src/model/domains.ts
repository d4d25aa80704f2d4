import Joi from 'joi';

import type { WacDomain } from '../clients/wac-core.js';

export const SERVICE_NAMES = [
  'callcontrol',
  'contacts',
  'datapipe',
  'filesharing',
  'filetransfer',
  'forms',
  'login',
  'meetings',
  'oauth2client',
  'presence',
  'remotelog',
  'usersettings',
  'usersgroup',
  'xmpp',
] as const;

export type DomainServices = Partial<Record<(typeof SERVICE_NAMES)[number], string[]>>;

/** A domain as kitter's API shows it. */
export interface Domain {
  id: string;
  domain: string;
  enable_anonymous: boolean;
  anonymous_capabilities: string[];
  origins: string[];
  parent: string | null;
  remote_sip_register: boolean;
  services: DomainServices;
}

export type DomainInput = Omit<Partial<Domain>, 'id'> & { domain: string };

/** A DNS-style name: labels of letters, digits and inner hyphens, joined by dots. */
export const domainName = Joi.string()
  .trim()
  .lowercase()
  .max(253)
  .pattern(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/)
  .rule({ message: '{{#label}} must be a domain name such as example.com' });

const stringList = Joi.array().items(Joi.string().max(1024)).max(256);

const services = Joi.object(Object.fromEntries(SERVICE_NAMES.map((name) => [name, stringList])));

export const domainCreateSchema = Joi.object({
  domain: domainName.required(),
  enable_anonymous: Joi.boolean(),
  anonymous_capabilities: stringList,
  origins: stringList,
  parent: domainName.allow(null),
  remote_sip_register: Joi.boolean(),
  services,
});

export function toWacDomain(input: DomainInput): Partial<WacDomain> {
  return {
    enableAnonymous: false,
    anonymousCapabilities: [],
    origins: [],
    parent: null,
    remoteSipRegister: false,
    services: {},
    ...toWacDomainPatch(input),
  };
}

export function fromWacDomain(domain: WacDomain): Domain {
  return {
    id: domain.id,
    domain: domain.domain,
    enable_anonymous: domain.enableAnonymous,
    anonymous_capabilities: domain.anonymousCapabilities,
    origins: domain.origins,
    parent: domain.parent,
    remote_sip_register: domain.remoteSipRegister,
    services: domain.services,
  };
}

/** A change to a domain, as `PATCH /domains/{id}` takes it (flat). */
export type DomainPatch = Omit<Partial<Domain>, 'id'>;

export const domainPatchSchema = Joi.object({
  domain: domainName,
  enable_anonymous: Joi.boolean(),
  anonymous_capabilities: stringList,
  origins: stringList,
  parent: domainName.allow(null),
  remote_sip_register: Joi.boolean(),
  services,
})
  .min(1)
  .messages({ 'object.min': 'the request body must change at least one field' });

const WAC_FIELDS: Record<keyof DomainPatch, keyof WacDomain> = {
  domain: 'domain',
  enable_anonymous: 'enableAnonymous',
  anonymous_capabilities: 'anonymousCapabilities',
  origins: 'origins',
  parent: 'parent',
  remote_sip_register: 'remoteSipRegister',
  services: 'services',
};

/** The wac-core fields of a patch: only those the patch names. */
export function toWacDomainPatch(patch: DomainPatch): Partial<WacDomain> {
  const changes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value !== undefined) changes[WAC_FIELDS[key as keyof DomainPatch]] = value;
  }
  return changes as Partial<WacDomain>;
}
