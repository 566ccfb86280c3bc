import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/create-logger.ts';
import { disabledDatasources } from '../queue/disabled-datasources.ts';
import { heldByOthers } from '../queue/held-rows.ts';
import type { ClaimScope } from '../queue/release-rows.ts';
import { retryWaits } from '../queue/retry-waits.ts';
import { toHostClock } from '../util/host-clock.ts';
import { outageLine } from './outage-line.ts';
import { disabledDatasourcesLine, heldRowsLine, retryWaitLine } from './progress-line.ts';
import type { StopWait } from './stop-wait.ts';

/**
 * The last word of a run by hand. Rows of its scope waiting for a retry it may not take yet (given back for
 * our fault, backing off after the source's) are not "no work": the operator is told how many, until when
 * and why, or would take the run for the end of it. Nor are rows another worker holds: a service's, or those
 * of a process that died with them (a second Ctrl-C), which wait for lis_managerd. The country's disabled
 * datasources are named too: their rows are parked, and the run said nothing of them.
 */
export async function sayNoRowsGained(
  db: Db,
  claimScope: ClaimScope,
  options: { stopWait: StopWait; log: Logger; scope: { scope: string }; staleWorkerSeconds: number },
): Promise<void> {
  const { stopWait, log, scope: at } = options;
  try {
    // Told on this host's clock (the operator's), though read on the database's (toHostClock): each answer's
    // database time beside this host's as that answer came. One host time read after all three answers moved
    // the first's times by the other two reads' duration, a second later than due when that crossed one.
    const waits = await stopWait.answered(retryWaits(db, claimScope));
    const waitsAt = new Date();
    const held = waits === 'stopped' ? 'stopped' : await stopWait.answered(heldByOthers(db, claimScope));
    const heldAt = new Date();
    const disabled = held === 'stopped' ? 'stopped' : await stopWait.answered(disabledDatasources(db, claimScope.country));
    const now = new Date();
    const here = (d: Date | null, dbNow: Date | null, hostAt: Date) => (d && dbNow ? toHostClock(d, dbNow, hostAt) : d);
    const lines = [
      waits === 'stopped'
        ? null
        : retryWaitLine({ ...waits, first: here(waits.first, waits.dbNow, waitsAt), last: here(waits.last, waits.dbNow, waitsAt) }, now),
      held === 'stopped' ? null : heldRowsLine({ ...held, topHeartbeat: here(held.topHeartbeat, held.dbNow, heldAt) }, now, options.staleWorkerSeconds),
      disabled === 'stopped' ? null : disabledDatasourcesLine(disabled, claimScope.country),
    ].filter(Boolean);
    const line = lines.join(' ');
    // "No work to do." stays as it was (scripts and tests look for it): the rows waiting follow it, as a warning.
    if (line) log.warn(`No rows gained. No work to do. ${line}`, at);
    else log.info('No rows gained. No work to do.', at);
  } catch (error) {
    log.warn(`No rows gained. ${outageLine('reading the rows waiting for a retry', 'Cannot tell whether rows wait for a retry', error)}`, at);
  }
}
