import { expect } from 'chai';

import { SecretBox } from '../../src/jobs/secrets.js';

describe('sealed secrets', () => {
  const box = new SecretBox('one-key-for-the-tests');

  it('opens what it sealed', () => {
    const sealed = box.seal({ password: 'S3cret!', sipPassword: 'sip-pass' });

    expect(box.open(sealed)).to.deep.equal({ password: 'S3cret!', sipPassword: 'sip-pass' });
  });

  it('never holds the secret in clear, and seals the same value differently each time', () => {
    const first = box.seal({ password: 'S3cret!' });
    const second = box.seal({ password: 'S3cret!' });

    expect(first).not.to.include('S3cret');
    expect(Buffer.from(first.split('.')[3], 'base64url').toString()).not.to.include('S3cret');
    expect(first).not.to.equal(second);
  });

  it('never uses a nonce twice, across refills of its pool of nonces', () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 2000; i++) nonces.add(box.seal({ password: 'p' }).split('.')[1]);

    expect(nonces.size).to.equal(2000);
    const opened = box.seal({ password: 'after many' });
    expect(box.open(opened)).to.deep.equal({ password: 'after many' });
  });

  it('refuses a value sealed with another key or altered', () => {
    const sealed = box.seal({ password: 'S3cret!' });
    const other = new SecretBox('another-key-entirely');
    const altered = sealed.slice(0, -2) + (sealed.endsWith('A') ? 'BB' : 'AA');

    expect(() => other.open(sealed)).to.throw();
    expect(() => box.open(altered)).to.throw();
    expect(() => box.open('not sealed')).to.throw(/unknown format/);
  });
});
