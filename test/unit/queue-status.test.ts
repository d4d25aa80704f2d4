import { expect } from 'chai';

import { minutesOf } from '../../src/jobs/queue-status.js';

const MINUTE = 60_000;
/** 12:00:00 of some day, on a minute boundary. */
const NOON = Math.floor(Date.UTC(2026, 0, 1, 12) / MINUTE) * MINUTE;

function metrics(count: number, prevTS: number, prevCount: number, data: number[] = []) {
  return { meta: { count, prevTS, prevCount }, data, count: data.length };
}

describe('jobs ended per minute, from BullMQ metrics', () => {
  it('is all zeros before any job ended', () => {
    expect(minutesOf(metrics(0, 0, 0), NOON, 5)).to.deep.equal([0, 0, 0, 0, 0]);
  });

  it('counts the jobs since the last data point in the minute they ended', () => {
    // 3 jobs ended at 12:00:10 and after; BullMQ wrote no data point yet.
    const counts = minutesOf(metrics(3, NOON + 10_000, 0), NOON + 30_000, 5);

    expect(counts).to.deep.equal([3, 0, 0, 0, 0]);
  });

  it('puts the data points in the minutes before the last write, newest first', () => {
    // Written at 12:02:05: 4 jobs in 12:01, then 2 in 12:00 (written earlier); 1 since.
    const counts = minutesOf(
      metrics(7, NOON + 2 * MINUTE + 5_000, 6, [4, 2]),
      NOON + 2 * MINUTE + 9_000,
      5,
    );

    expect(counts).to.deep.equal([1, 4, 2, 0, 0]);
  });

  it('moves everything back by the quiet minutes since the last write', () => {
    const counts = minutesOf(metrics(7, NOON, 6, [4, 2]), NOON + 2 * MINUTE, 5);

    expect(counts).to.deep.equal([0, 0, 1, 4, 2]);
  });

  it('drops what is older than the window, and copes with a clock running behind', () => {
    expect(minutesOf(metrics(7, NOON, 6, [4, 2]), NOON + 4 * MINUTE, 5)).to.deep.equal([
      0, 0, 0, 0, 1,
    ]);
    expect(minutesOf(metrics(2, NOON + MINUTE, 1, [5]), NOON, 3)).to.deep.equal([1, 5, 0]);
  });
});
