import { expect } from 'chai';

import { runChaos } from '../chaos/chaos.js';

describe('a small chaos run', function () {
  this.timeout(180_000);

  it('ends every job and leaves no drift while faults fly and workers are killed', async () => {
    const report = await runChaos({
      users: 60,
      workers: 2,
      killEveryMs: 1500,
      errorRate: 0.05,
      dropRate: 0.02,
      loseAnswerRate: 0.02,
    });

    expect(report.unfinished, JSON.stringify(report)).to.equal(0);
    expect(report.kills).to.be.greaterThan(0);
    expect(
      report.faults.errors + report.faults.drops + report.faults.lost_answers,
    ).to.be.greaterThan(0);
    expect(report.lost, JSON.stringify(report)).to.equal(0);
    expect(report.drift, JSON.stringify(report)).to.equal(0);
  });
});
