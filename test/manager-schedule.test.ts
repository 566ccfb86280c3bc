import assert from 'node:assert/strict';
import { startSchedule } from '../src/manager/check-schedule.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { waitFor } from './helpers/processes.ts';
import { restoreWallClock, stepWallClock } from './helpers/wall-clock.ts';

describe("lis_managerd's schedules when this host's clock steps", function () {
  this.timeout(10_000);
  const { log, lines } = capturedLogger('managerd', parseConfig({}).log);
  afterEach(() => restoreWallClock());

  it('a slot the clock stepped past (or a busy moment made late) still runs once: the weekly upkeep is not put off a week', async () => {
    // This host's clock at 04:59:59.6 on a Saturday, the upkeep's slot 0.4 s away.
    const saturday = new Date();
    saturday.setDate(saturday.getDate() + ((6 - saturday.getDay() + 7) % 7));
    saturday.setHours(4, 59, 59, 600);
    stepWallClock(saturday.getTime() - Date.now());
    const runs: Date[] = [];
    const schedule = startSchedule([{ name: 'cron_frontend', expression: '0 5 * * 6', run: () => Promise.resolve(void runs.push(new Date())) }], log);
    try {
      // NTP steps the clock 3 s forward across 05:00: the slot's timer fires at 05:00:03.
      stepWallClock(3000);
      await waitFor(() => runs.length === 1, 2000, 'the upkeep');
      assert.equal(runs[0].getHours(), 5);
    } finally {
      await schedule.stop();
    }
  });

  it('a step back sets every schedule again from the new time: a check of every second goes on, not an hour later', async () => {
    const runs: number[] = [];
    const schedule = startSchedule([{ name: 'stuck_jobs', expression: '* * * * * *', run: () => Promise.resolve(void runs.push(performance.now())) }], log, {
      watchEveryMs: 100,
    });
    try {
      await waitFor(() => runs.length >= 1, 2500, 'a first run');
      stepWallClock(-3600_000);
      const before = runs.length;
      await waitFor(() => runs.length >= before + 2, 3500, 'runs after the step');
      assert.ok(
        lines.some((l) => /^WARN this host's clock stepped back 36\d\d\.\ds: the schedules are set again from its new time$/.test(l)),
        lines.join('\n'),
      );
    } finally {
      await schedule.stop();
    }
  });
});
