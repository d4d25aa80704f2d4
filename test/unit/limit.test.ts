import { expect } from 'chai';

import { loadOnce, settleWithin, Slots } from '../../src/limit.js';

describe('slots', () => {
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it('runs at most the limit at once; the rest start in the order they came', async () => {
    const slots = new Slots(2);
    const started: number[] = [];
    const finish: Array<() => void> = [];
    const runs = [0, 1, 2, 3].map((n) =>
      slots.run(async () => {
        started.push(n);
        await new Promise<void>((resolve) => (finish[n] = resolve));
        return n * 10;
      }),
    );

    await tick();
    expect(started).to.deep.equal([0, 1]);
    finish[1]();
    await tick();
    expect(started).to.deep.equal([0, 1, 2]);
    finish[0]();
    await tick();
    expect(started).to.deep.equal([0, 1, 2, 3]);
    finish[2]();
    finish[3]();
    expect(await Promise.all(runs)).to.deep.equal([0, 10, 20, 30]);
  });

  it('frees the slot of a run that fails', async () => {
    const slots = new Slots(1);
    const failed = slots.run(async () => {
      throw new Error('no');
    });
    const next = slots.run(async () => 'ran');

    const outcome = await failed.then(
      () => 'ran',
      (err: Error) => err.message,
    );

    expect(outcome).to.equal('no');
    expect(await next).to.equal('ran');
  });
});

describe('settleWithin', () => {
  const after = (ms: number, fail = false) =>
    new Promise((resolve, reject) => setTimeout(fail ? reject : resolve, ms, new Error('no')));

  it('answers done for work that ends in time, failed or not, and late otherwise', async () => {
    expect(await settleWithin(after(5), 200)).to.equal('done');
    expect(await settleWithin(after(5, true), 200)).to.equal('done');
    // Work that fails after its time is up is no unhandled rejection.
    expect(await settleWithin(after(100, true), 10)).to.equal('late');
    await new Promise((resolve) => setTimeout(resolve, 120));
  });
});

describe('loadOnce', () => {
  it('runs the load once for every caller, and again after a failure', async () => {
    let runs = 0;
    let fail = true;
    const load = loadOnce(async () => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (fail) throw new Error('not this time');
      return runs;
    });

    const failed = await Promise.allSettled([load(), load()]);
    expect(failed.map((result) => result.status)).to.deep.equal(['rejected', 'rejected']);
    fail = false;
    expect(await Promise.all([load(), load()])).to.deep.equal([2, 2]);
    expect(await load()).to.equal(2);
    expect(runs).to.equal(2);
  });
});
