import { expect } from 'chai';

import { exitStatusOf } from '../../src/imports/cli.js';

describe('kitter import: its exit status', () => {
  it('is 0 only when every row of the file became a user', () => {
    expect(exitStatusOf({ invalid: 0, failed: 0, cancelled: 0 })).to.equal(0);
  });

  it('is 1 when a row was refused, failed, or was cancelled before it ran', () => {
    expect(exitStatusOf({ invalid: 1, failed: 0, cancelled: 0 })).to.equal(1);
    expect(exitStatusOf({ invalid: 0, failed: 2, cancelled: 0 })).to.equal(1);
    // A script running `kitter import … && next-step` must not go on after a cancel.
    expect(exitStatusOf({ invalid: 0, failed: 0, cancelled: 190_711 })).to.equal(1);
  });
});
