import assert from 'node:assert/strict';
import { machineConditionsLine } from '../bench/lib/bench-database.ts';
import { busyShare, machineCpu, percent, stealShare } from '../bench/lib/proc-stats.ts';

describe("the benches' account of the machine", () => {
  it("tells the host's steal apart from the machine's own busy time", () => {
    const before = { busy: 100, idle: 50, steal: 10 };
    const after = { busy: 160, idle: 90, steal: 35 };
    // 100 s of CPU passed: 60 busy, 25 of them taken by the host.
    assert.equal(busyShare(before, after), 0.6);
    assert.equal(stealShare(before, after), 0.25);
    assert.equal(stealShare(before, before), 0, 'no time passed: no share, not NaN');
    assert.equal(percent(0.254), '25 %');
    assert.equal(
      machineConditionsLine(before, after, [1.234, 2, 3.06]),
      'machine over the bench: cores 60 % busy, 25 % taken by the host (steal); load average now 1.2 2.0 3.1',
    );
  });

  it("reads this machine's /proc/stat: steal is part of busy time, and time only goes forward", () => {
    const first = machineCpu();
    const second = machineCpu();
    assert.ok(first.steal >= 0 && first.steal <= first.busy, JSON.stringify(first));
    assert.ok(second.busy >= first.busy && second.idle >= first.idle && second.steal >= first.steal);
  });
});
