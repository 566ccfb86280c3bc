import assert from 'node:assert/strict';
import { scheduleZone, startSchedule } from '../src/manager/check-schedule.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { skewedClockEnv } from './helpers/skewed-clock.ts';
import { restoreWallClock, stepWallClock } from './helpers/wall-clock.ts';
import { within } from './helpers/within-deadline.ts';

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
      await waitFor(() => runs.length === 1, 8000, 'the upkeep');
      assert.equal(runs[0].getHours(), 5);
    } finally {
      await schedule.stop();
    }
  });

  it('in a zone with summer time, a check of every second goes on through the hour repeated as it ends', async () => {
    assert.deepEqual(['*/30 * * * * *', '*/5 * * * *', '17 * * * *', '0 5 * * 6', '0 */2 * * *'].map(scheduleZone), [
      'UTC',
      'UTC',
      'UTC',
      undefined,
      undefined,
    ]);
    // 01:59:58 EDT on 1 November 2026 (libfaketime reads it in the child's zone), two seconds before New York's
    // clocks go back to 01:00 EST (06:00 UTC).
    const env = { ...skewedClockEnv(0), FAKETIME: '@2026-11-01 01:59:58', TZ: 'America/New_York' };
    const child = spawnTs('test/fixtures/schedule-child.ts', ['* * * * * *', '3000', '2026-11-01T06:00:00Z'], env);
    await child.exited;
    assert.match(child.output(), /^ran 2026-11-01T06:00:0\d/m, `no run after 01:59:59 EDT until 02:00 EST, an hour on:\n${child.output()}`);
  });

  it('a step back sets the schedules again from the new time: a check of every second goes on, not an hour later', async () => {
    const runs: number[] = [];
    const schedule = startSchedule([{ name: 'stuck_jobs', expression: '* * * * * *', run: () => Promise.resolve(void runs.push(performance.now())) }], log);
    try {
      await waitFor(() => runs.length >= 1, 2500, 'a first run');
      stepWallClock(-3600_000);
      const before = runs.length;
      await waitFor(() => runs.length >= before + 1, 3500, 'runs after the step');
      assert.ok(
        lines.some((l) => /^WARN stuck_jobs: this host's clock stepped back 3\d{3}\.\ds: its next run is set from the new time$/.test(l)),
        lines.join('\n'),
      );
    } finally {
      await schedule.stop();
    }
  });
});

describe("lis_managerd's schedule", () => {
  it("a check still running at its next time is skipped, said in the manager's log, not printed to the service's unrotated .out file", async () => {
    const { log, lines } = capturedLogger('managerd', { dir: '/nonexistent', level: 'info', maxFiles: 1, maxSize: '1k' });
    // node-cron's own default logger prints through console: anything it says there goes to the .out file.
    const printed: string[] = [];
    const originals = { info: console.info, warn: console.warn, error: console.error, log: console.log };
    for (const k of Object.keys(originals) as Array<keyof typeof originals>) console[k] = (...args: unknown[]) => void printed.push(args.join(' '));
    let release: () => void = () => {};
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    // A run that hangs (a database that does not answer), every second.
    const run = () => (started(), new Promise<void>((resolve) => (release = resolve)));
    const schedule = startSchedule([{ name: 'stuck_jobs', expression: '* * * * * *', run }], log);
    try {
      await within(running, 'first run', 3000);
      await waitFor(
        () => lines.some((l) => /^WARN stuck_jobs: not run at this time, the run before is still going/.test(l)),
        3000,
        'the skipped run in the log',
      );
    } finally {
      await schedule.stop();
      release();
      Object.assign(console, originals);
    }
    assert.deepEqual(printed, [], 'nothing printed outside the log');
  });
});
