import { expect } from 'chai';
import Joi from 'joi';

import { validate } from '../../src/api/validate.js';
import { ApiError } from '../../src/errors.js';
import { splitSecrets, userCreateSchema, type UserInput } from '../../src/model/users.js';

const body = Joi.object({ user: userCreateSchema.required() });

function refusal(value: unknown): ApiError {
  try {
    validate(body, value);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('the value was accepted');
}

const valid = {
  user: {
    username: 'JohnDoe',
    email: 'John@Example.com',
    credentials: { password: 'S3cure!pass', temporary: false },
    attributes: {
      domain: 'Example.com',
      phone_number: '+34612345678',
      capabilities: ['+chat', '-whiteboard'],
      sip_mapping: { username: 'sip_user', password: 'sip-pass', sip_domain: 'sip.example.com' },
    },
  },
};

describe('user validation', () => {
  it('accepts the reference example and lower-cases username, email and domain', () => {
    const { user } = validate<{ user: UserInput }>(body, valid);

    expect(user.username).to.equal('johndoe');
    expect(user.email).to.equal('john@example.com');
    expect(user.attributes.domain).to.equal('example.com');
  });

  it('requires a username and a domain, naming both', () => {
    const err = refusal({ user: { attributes: {} } });

    expect(err.status).to.equal(400);
    expect(err.details?.map((d) => d.path)).to.deep.equal([
      'user.username',
      'user.attributes.domain',
    ]);
  });

  it('refuses an unknown key and names it', () => {
    const err = refusal({ user: { ...valid.user, nickname: 'jd' } });

    expect(err.message).to.include('user.nickname');
    expect(err.details?.[0].message).to.match(/not allowed/);
  });

  const badNames: Array<[string, string]> = [
    ['jo', 'too short'],
    ['john doe', 'a space'],
    ['名前です', 'CJK ideographs'],
    ['a'.repeat(256), 'too long'],
  ];
  for (const [name, why] of badNames) {
    it(`refuses a username with ${why}, as Keycloak would`, () => {
      const err = refusal({ user: { ...valid.user, username: name } });

      expect(err.details?.[0].path).to.equal('user.username');
    });
  }

  it('refuses a malformed email, phone number and capability', () => {
    const err = refusal({
      user: {
        ...valid.user,
        email: 'not-an-email',
        attributes: { ...valid.user.attributes, phone_number: 'call me', capabilities: ['chat'] },
      },
    });

    expect(err.details?.map((d) => d.path)).to.deep.equal([
      'user.email',
      'user.attributes.phone_number',
      'user.attributes.capabilities.0',
    ]);
  });

  it('needs a password for a SIP mapping', () => {
    const err = refusal({
      user: {
        ...valid.user,
        attributes: { ...valid.user.attributes, sip_mapping: { username: 'sip_user' } },
      },
    });

    expect(err.details?.[0].path).to.equal('user.attributes.sip_mapping.password');
  });

  it('keeps the passwords apart from the job-safe part of a user', () => {
    const { user } = validate<{ user: UserInput }>(body, valid);

    const { spec, secrets } = splitSecrets(user);

    expect(secrets).to.deep.equal({ password: 'S3cure!pass', sipPassword: 'sip-pass' });
    expect(JSON.stringify(spec)).not.to.include('S3cure!pass');
    expect(JSON.stringify(spec)).not.to.include('sip-pass');
    expect(spec.credentials).to.deep.equal({ temporary: false });
    expect(spec.attributes.sip_mapping).to.deep.equal({
      username: 'sip_user',
      sip_domain: 'sip.example.com',
    });
  });
});
