import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { UsageError } from '../errors.ts';
import { retryFailed } from '../manager/bad-retry-jobs.ts';
import { failedReasonCounts } from '../queue/failed-reasons.ts';
import { isWorkStage, WORK_STAGES } from '../queue/stages.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis retry --country uk [--reason R] [--datasource N] [--stage S]`: failed rows back to the queue. */
export function addRetryCommand(program: Command): void {
  program
    .command('retry')
    .description('put failed rows back in the queue (attempts reset), optionally only those of one reason, datasource or stage')
    .requiredOption('--country <code>', 'the country')
    .option('--reason <class>', 'only rows that failed with this last_error_class (e.g. timeout, http_5xx)')
    .option('--datasource <id>', 'only this datasource')
    .option('--stage <stage>', `only rows failed in this stage (${WORK_STAGES.join(', ')})`)
    .action((opts: { country: string; reason?: string; datasource?: string; stage?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = parseCountry(opts.country, config);
        const datasourceId = opts.datasource === undefined ? undefined : parseIntFlag('--datasource', opts.datasource, 0, 999_999_999);
        if (opts.stage !== undefined && !isWorkStage(opts.stage))
          throw new UsageError(`--stage ${JSON.stringify(opts.stage)}: expected one of ${WORK_STAGES.join(', ')}`);
        if (opts.reason !== undefined && !/^[a-z0-9_]+$/.test(opts.reason))
          throw new UsageError(`--reason ${JSON.stringify(opts.reason)}: expected an error class such as http_5xx or timeout`);
        return withDatabase(config, async (db) => {
          const filter = { country, datasourceId, stage: opts.stage };
          const n = await retryFailed(db, { ...filter, reason: opts.reason });
          console.log(`${n} failed rows put back in the queue`);
          // Classes outside the failure table are stored too (host_gone, expired...), so an unknown name is not
          // refused up front; but a typo must not pass for "nothing to do": show what the rows do have.
          if (n === 0 && opts.reason !== undefined) {
            const scope = [
              `country ${country}`,
              ...(datasourceId === undefined ? [] : [`datasource ${datasourceId}`]),
              ...(opts.stage ? [`stage ${opts.stage}`] : []),
            ];
            const reasons = await failedReasonCounts(db, filter);
            console.log(
              `no failed row (${scope.join(', ')}) has reason ${JSON.stringify(opts.reason)}; ` +
                (reasons.length ? `the failed rows' reasons now: ${reasons.map((r) => `${r.reason} (${r.rows})`).join(', ')}` : 'no row there is failed'),
            );
          }
        });
      }),
    );
}
