import type { Command } from 'commander';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { ago, formatTable, workerReport } from '../manager/worker-report.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis worker-report`: who is working, on what, how fast, and what each holds. */
export function addWorkerReportCommand(program: Command): void {
  program
    .command('worker-report')
    .description('every worker (running, or stopped in the last day): component, host, pid, release, heartbeat, last hour, rows held')
    .option('--country <code>', 'only this country')
    .option('--json', 'machine-readable')
    .action((opts: { country?: string; json?: boolean }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = opts.country === undefined ? undefined : parseCountry(opts.country, config);
        return withDatabase(
          config,
          async (db) => {
            const rows = await workerReport(db, config.manager.staleWorkerSeconds, country);
            if (opts.json) {
              console.log(JSON.stringify(rows, null, 2));
              return;
            }
            if (rows.length === 0) {
              console.log('no workers running or stopped in the last day');
              return;
            }
            console.log(
              formatTable(
                ['component', 'host', 'pid', 'country', 'status', 'release', 'started', 'heartbeat', 'done/h', 'failed/h', 'holding'],
                rows.map((r) => [
                  r.component,
                  r.host,
                  r.pid,
                  r.country ?? '-',
                  r.status,
                  // A worker of a release from before the column: its release is not known, not none.
                  r.release ?? '?',
                  r.startedAt.toISOString().slice(0, 19).replace('T', ' '),
                  ago(r.silentSeconds),
                  r.doneLastHour,
                  r.failedLastHour,
                  r.holding,
                ]),
              ),
            );
          },
          { readOnly: true },
        );
      }),
    );
}
