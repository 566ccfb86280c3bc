import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../log/create-logger.ts';
import { watchClockSteps } from '../util/clock-step-watch.ts';

/** One scheduled job of lis_managerd --service: a check, the weekly upkeep, the queue's sampling. */
export interface ScheduledJob {
  name: string;
  /** A node-cron expression (seconds field optional), on this host's clock and time zone. */
  expression: string;
  /** Never rejects (the caller logs its own failures). */
  run: () => Promise<unknown>;
}

/**
 * How late a slot may start and still run. node-cron's default is one second: a slot whose timer fired later than
 * that (the event loop busy for a moment, or the clock stepped forward past it) was skipped with a warning on the
 * console, which a service does not keep, and a weekly upkeep at `0 5 * * 6` waited another week. A late slot
 * still runs once, unless the next slot has come meanwhile (node-cron runs the latest one then).
 */
const LATE_SLOT_MS = 86_400_000;

/**
 * Starts the jobs on their schedules and returns their stop. A job still running when its next slot comes is not
 * started again. When this host's wall clock steps back, every schedule is set again from the new time: node-cron
 * computes its next slot on the wall clock once, and would otherwise wait out the step (an hour's step back, an
 * hour without stuck_jobs or alerts).
 */
export function startSchedule(jobs: ScheduledJob[], log: Logger, options: { watchEveryMs?: number } = {}): { stop: () => Promise<void> } {
  const tasks: ScheduledTask[] = jobs.map((job) => {
    // Our own overlap guard: a task set again on a step back forgets the run it had under way.
    let running = false;
    const once = async () => {
      if (running) return;
      running = true;
      try {
        await job.run();
      } finally {
        running = false;
      }
    };
    return cron.schedule(job.expression, once, { name: job.name, noOverlap: true, missedExecutionTolerance: LATE_SLOT_MS, suppressMissedWarning: true });
  });
  const stopWatch = watchClockSteps((ms) => {
    log.warn(`this host's clock stepped back ${(ms / 1000).toFixed(1)}s: the schedules are set again from its new time`, { scope: 'Manager::serve' });
    for (const task of tasks) {
      // Synchronous for an in-process task, whatever the declared type says.
      void task.stop();
      void task.start();
    }
  }, options.watchEveryMs);
  return {
    stop: async () => {
      stopWatch();
      await Promise.all(tasks.map((t) => t.destroy()));
    },
  };
}
