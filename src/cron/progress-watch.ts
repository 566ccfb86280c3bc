import type { Logger } from '../log/create-logger.ts';

/**
 * Says, every `everyMs` while a part of the upkeep runs, that it is still running and for how long. The scans
 * have no query bound (a purge may rightly take an hour): an operator tailing the log at 3 a.m. sees which part
 * waits, and since when, whether the server is busy or (until upkeep.frozenDatabaseMinutes cuts the run,
 * database-watch.ts) answers nothing. Returns the stop, to be called when the part ends.
 */
export function watchProgress(log: Logger, what: string, everyMs: number, meta: Record<string, unknown>): () => void {
  const started = Date.now();
  const timer = setInterval(() => {
    log.warn(`${what} still running after ${minutesSince(started)} (a long purge, or a database that does not answer: see pg_stat_activity)`, meta);
  }, everyMs);
  // Never what keeps the process alive: the part's own work does that.
  timer.unref();
  return () => clearInterval(timer);
}

/** `12 min`, `1.5 min`, `20 s`: how long since `started`. Pure but for the clock. */
function minutesSince(started: number): string {
  const seconds = (Date.now() - started) / 1000;
  return seconds < 60 ? `${Math.round(seconds)} s` : `${Math.round((seconds / 60) * 10) / 10} min`;
}
