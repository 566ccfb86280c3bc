import assert from 'node:assert/strict';
import { scheduleTask } from '../src/manager/scheduled-task.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { within } from './helpers/within-deadline.ts';

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
    const task = scheduleTask('* * * * * *', 'stuck_jobs', () => (started(), new Promise<void>((resolve) => (release = resolve))), log);
    let timer: NodeJS.Timeout | undefined;
    try {
      await within(running, 'first run', 3000);
      const skipped = new Promise<void>((resolve) => {
        timer = setInterval(() => lines.some((l) => /^WARN stuck_jobs: not run at this time, the run before is still going/.test(l)) && resolve(), 20);
      });
      await within(skipped, 'line in the log for the skipped run', 3000);
    } finally {
      clearInterval(timer);
      await task.destroy();
      release();
      Object.assign(console, originals);
    }
    assert.deepEqual(printed, [], 'nothing printed outside the log');
  });
});
