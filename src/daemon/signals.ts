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

export { abortableDelay } from '../util/abortable-delay.ts';
