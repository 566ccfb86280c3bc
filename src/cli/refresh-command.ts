import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import type { Db } from '../db/connect.ts';
import { withDatabase } from '../db/with-database.ts';
import { refreshHeldByDisabled, refreshRows } from '../queue/refresh-rows.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis refresh`'s work: the queue's refresh operation (live rows stay live meanwhile). Returns how many rows were queued. */
export async function refreshDueRows(db: Db, options: { country: string; olderThanDays: number; limit?: number }): Promise<number> {
  return refreshRows(db, options);
}

const DEFAULT_OLDER_THAN_DAYS = 30;

/** `lis refresh --country uk [--older-than-days 30] [--limit N]` */
export function addRefreshCommand(program: Command): void {
  program
    .command('refresh')
    .description('queue live images downloaded more than N days ago for a conditional re-download (they stay live meanwhile)')
    .requiredOption('--country <code>', 'the country to refresh')
    // No commander default: given as a string it shows as (default: "30"), a number that looks like a word.
    .option('--older-than-days <n>', `refresh originals downloaded longer ago than this (default: ${DEFAULT_OLDER_THAN_DAYS})`)
    .option('--limit <n>', 'refresh at most this many (oldest first)')
    .action((opts: { country: string; olderThanDays?: string; limit?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = parseCountry(opts.country, config);
        const olderThanDays = opts.olderThanDays === undefined ? DEFAULT_OLDER_THAN_DAYS : parseIntFlag('--older-than-days', opts.olderThanDays, 0, 36500);
        const limit = opts.limit === undefined ? undefined : parseIntFlag('--limit', opts.limit, 1, 1_000_000_000);
        return withDatabase(config, async (db) => {
          const moved = await refreshDueRows(db, { country, olderThanDays, limit });
          console.log(`${moved} live images queued for refresh (downloaded more than ${olderThanDays} days ago)`);
          const disabled = await refreshHeldByDisabled(db, { country, olderThanDays });
          if (disabled > 0)
            console.log(
              `${disabled} more are of disabled datasources, whose sources are not asked: left as they are (lis datasource show ${country}; a refresh after lis datasource enable takes them)`,
            );
          return 0;
        });
      }),
    );
}
