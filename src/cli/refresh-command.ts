import type { Command } from 'commander';
import { sql } from 'kysely';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import type { Db } from '../db/connect.ts';
import { openDatabase } from '../db/connect.ts';
import { runCommand } from './exit-on-error.ts';

/**
 * Puts live rows whose original was downloaded more than `olderThanDays` ago
 * (or never recorded) back into the download stage. Their files stay where
 * they are; lis_downloadd then asks the server with If-None-Match /
 * If-Modified-Since, and a 304 or the same bytes send the row straight back
 * to live. `store_host` is cleared because the download stage claims only
 * such rows; the downloader sets it again. Returns how many rows moved.
 */
export async function refreshDueRows(db: Db, options: { country: string; olderThanDays: number; limit?: number }): Promise<number> {
  const result = await sql`
    UPDATE live_images
       SET stage = 'download', state = 'waiting', store_host = '', attempts = 0, next_attempt_at = now(),
           last_error = NULL, last_error_class = NULL, updated_at = now()
     WHERE id = ANY(ARRAY(
             SELECT id FROM live_images
              WHERE country = ${options.country} AND stage = 'live' AND state = 'done' AND locked_by IS NULL
                AND (downloaded_at IS NULL OR downloaded_at < now() - make_interval(days => ${options.olderThanDays}))
              ORDER BY downloaded_at NULLS FIRST, id
              LIMIT ${options.limit ?? 1_000_000_000}))`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** `lis refresh --country uk [--older-than-days 30] [--limit N]` */
export function addRefreshCommand(program: Command): void {
  program
    .command('refresh')
    .description('queue live images downloaded more than N days ago for a conditional re-download')
    .requiredOption('--country <code>', 'the country to refresh')
    .option('--older-than-days <n>', 'refresh originals downloaded longer ago than this', '30')
    .option('--limit <n>', 'refresh at most this many (oldest first)')
    .action((opts: { country: string; olderThanDays: string; limit?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: command.optsWithGlobals().config });
        const country = parseCountry(opts.country, config);
        const olderThanDays = parseIntFlag('--older-than-days', opts.olderThanDays, 0, 36500);
        const limit = opts.limit === undefined ? undefined : parseIntFlag('--limit', opts.limit, 1, 1_000_000_000);
        const db = await openDatabase(config);
        try {
          const moved = await refreshDueRows(db, { country, olderThanDays, limit });
          console.log(`${moved} live images queued for refresh (downloaded more than ${olderThanDays} days ago)`);
          return 0;
        } finally {
          await db.destroy();
        }
      }),
    );
}
