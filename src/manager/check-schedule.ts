import cron from 'node-cron';
import type { Logger } from '../log/create-logger.ts';

/** One scheduled job of lis_managerd --service: a check, the weekly upkeep, the queue's sampling. */
export interface ScheduledJob {
  name: string;
  /** A node-cron expression (seconds field optional). */
  expression: string;
  /** Never rejects (the caller logs its own failures). */
  run: () => Promise<unknown>;
}

/**
 * The longest a timer waits before the wall clock is read again: a step of the clock (NTP) is seen within it, a
 * slot it stepped past is run then, and one it stepped back from is set again from the new time.
 */
const LOOK_AGAIN_MS = 60_000;

/** The wall clock gone back this far against the monotonic one while a timer waited is a step back, said in the log. */
const STEP_BACK_MS = 2000;

/**
 * Pure: 'UTC' for an expression that names no hour, day or month (every N seconds or minutes, hourly): it means the
 * same on any clock, and on the host's zone node-cron skipped the hour repeated as summer time ends (in
 * America/New_York, after 01:59:59 EDT an every-second check came next at 02:00 EST, an hour later): no
 * stuck_jobs, no alerts for that hour. Undefined (the host's zone) for the others, which name a time of day.
 */
export function scheduleZone(expression: string): 'UTC' | undefined {
  const fields = expression.trim().split(/\s+/);
  const [, hour, day, month, weekday] = fields.length === 6 ? fields.slice(1) : fields;
  return fields.length >= 5 && [hour, day, month, weekday].every((f) => f === '*') ? 'UTC' : undefined;
}

/**
 * Starts the jobs on their schedules and returns their stop. node-cron gives the next slot (its matcher only); the
 * timers are ours, as its own runner went wrong with the clock: it skipped a slot whose timer fired over a second
 * late (a busy moment, or the clock stepped forward past it: the weekly upkeep put off a week), waited out a step
 * back (an hour's step, an hour without stuck_jobs), and in the hour repeated as summer time ends it never ran at
 * all (its "now" without milliseconds read that hour's times as the summer ones, an hour earlier). So: a slot is
 * run once however late, unless a later one has come; the wall clock is read again at least every LOOK_AGAIN_MS;
 * a job still running when its next slot comes is not started again, and the log says so.
 */
export function startSchedule(jobs: ScheduledJob[], log: Logger): { stop: () => Promise<void> } {
  let stopped = false;
  const timers = new Map<string, NodeJS.Timeout>();
  const tasks = jobs.map((job) => {
    const task = cron.createTask(job.expression, () => {}, { name: job.name, timezone: scheduleZone(job.expression) });
    let busy = false;
    const runOnce = () => {
      if (busy) {
        // Said where operators look (node-cron's own runner printed its warning to stdout: the .out file, never rotated).
        log.warn(`${job.name}: not run at this time, the run before is still going (a database that does not answer holds it up)`, {
          scope: 'Manager::serve',
        });
        return;
      }
      busy = true;
      void job.run().finally(() => (busy = false));
    };
    const arm = (slot: Date) => {
      if (stopped) return;
      const [wallAt, monoAt] = [Date.now(), performance.now()];
      const timer = setTimeout(
        () => {
          // How far the wall clock went back while the timer waited (the monotonic clock does not step).
          const back = performance.now() - monoAt - (Date.now() - wallAt);
          if (back > STEP_BACK_MS)
            log.warn(`${job.name}: this host's clock stepped back ${(back / 1000).toFixed(1)}s: its next run is set from the new time`, {
              scope: 'Manager::serve',
            });
          else if (Date.now() >= slot.getTime()) runOnce();
          arm(task.getNextRuns(1)[0]);
        },
        Math.max(0, Math.min(slot.getTime() - wallAt, LOOK_AGAIN_MS)),
      );
      timers.set(job.name, timer);
    };
    arm(task.getNextRuns(1)[0]);
    return task;
  });
  return {
    stop: async () => {
      stopped = true;
      for (const timer of timers.values()) clearTimeout(timer);
      await Promise.all(tasks.map((t) => t.destroy()));
    },
  };
}
