import cron, { type Logger as CronLogger, type ScheduledTask } from 'node-cron';
import type { Logger } from '../log/create-logger.ts';
import { errorMessage } from '../errors.ts';

/**
 * Pure: node-cron's own messages about a task, in the manager's log under its scope. By default node-cron
 * prints them to stdout, coloured: a service's `.out` file (never rotated) or the journal got
 * `[NODE-CRON] [WARN] task still running, new execution blocked by overlap prevention!` at every tick a run
 * held up (a check waiting on a database that hangs: every 5 s for 2 min with stuck_jobs at 5 s), and the
 * manager's log, where an operator looks, said nothing of the runs skipped.
 */
export function cronLogger(log: Logger, name: string): CronLogger {
  const scope = `Manager::${name}`;
  const text = (message: string | Error, error?: Error) =>
    `${typeof message === 'string' ? message : errorMessage(message)}${error ? `: ${errorMessage(error)}` : ''}`;
  return {
    info: (message) => log.debug(`${name}: ${message}`, { scope }),
    debug: (message, error) => log.debug(`${name}: ${text(message, error)}`, { scope }),
    warn: (message) =>
      log.warn(
        /overlap/.test(message)
          ? `${name}: not run at this time, the run before is still going (a database that does not answer holds it up)`
          : `${name}: ${message}`,
        { scope },
      ),
    error: (message, error) => log.error(`${name}: ${text(message, error)}`, { scope }),
  };
}

/** A task of the manager's schedule: one run at a time, what node-cron says about it in the log. */
export function scheduleTask(expression: string, name: string, run: () => Promise<unknown>, log: Logger): ScheduledTask {
  return cron.schedule(expression, run, { name, noOverlap: true, logger: cronLogger(log, name) });
}
