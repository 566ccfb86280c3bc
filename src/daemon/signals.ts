import { isDatabaseOutage } from '../db/database-error.ts';

/**
 * SIGTERM or SIGINT once: abort, so the daemon finishes the row in hand,
 * gives back the rest of its chunk and exits. A second one: exit at once
 * (rows still held are released by the manager or by the next start).
 */
export function installStopSignals(onFirst: (signal: NodeJS.Signals) => void): { controller: AbortController; uninstall: () => void } {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      process.stderr.write(`\n${signal} again: exiting now.\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    onFirst(signal);
    controller.abort(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return {
    controller,
    uninstall: () => {
      process.off('SIGTERM', handler);
      process.off('SIGINT', handler);
    },
  };
}

/**
 * Whether `error` is a wait for the database that a stop cut short (SIGTERM while a service waited for its database
 * at start, to connect or to register): the operator's stop, not a failure. The process says so and exits 0,
 * rather than exit 1 with the outage's error (and, for a driver's error, its stack), which a supervisor reads as
 * a failed stop.
 */
export function stoppedWhileDatabaseAway(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted && isDatabaseOutage(error);
}

export { abortableDelay } from '../util/abortable-delay.ts';
