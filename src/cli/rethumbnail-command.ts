import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { openDatabase } from '../db/connect.ts';
import { UsageError } from '../errors.ts';
import { reworkRows } from '../queue/rework-rows.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/**
 * `lis rethumbnail [--country uk] [--datasource N] [--preset NAME] [--limit N]`:
 * live images thumbnailed again (changed process details, a new preset), while
 * they stay live: the new files get new names and replace the old ones only
 * once they are on every enabled frontend. New images are worked first.
 */
export function addRethumbnailCommand(program: Command): void {
  program
    .command('rethumbnail')
    .description('thumbnail live images again (they stay live; the new version replaces the old once on every frontend)')
    .option('--country <code>', 'only this country (default: all)')
    .option('--datasource <id>', 'only this datasource (with --country)')
    .option('--preset <name>', 'only images that lack this preset (one of thumbnail.presets, e.g. one just added)')
    .option('--limit <n>', 'at most this many (lowest ids first)')
    .action((opts: { country?: string; datasource?: string; preset?: string; limit?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = opts.country === undefined ? undefined : parseCountry(opts.country, config);
        const datasourceId = opts.datasource === undefined ? undefined : parseIntFlag('--datasource', opts.datasource, 0, 999_999_999);
        if (datasourceId !== undefined && country === undefined) throw new UsageError('--datasource needs --country');
        // Only configured presets are ever made, so every live image lacks any other name: a typo would queue them all.
        const presets = Object.keys(config.thumbnail.presets);
        if (opts.preset !== undefined && !presets.includes(opts.preset))
          throw new UsageError(`--preset ${JSON.stringify(opts.preset)}: not a configured preset (thumbnail.presets: ${presets.join(', ')})`);
        const limit = opts.limit === undefined ? undefined : parseIntFlag('--limit', opts.limit, 1, 1_000_000_000);
        const db = await openDatabase(config);
        try {
          const n = await reworkRows(db, 'thumbnail', { country, datasourceId, missingPreset: opts.preset, limit });
          console.log(`${n} live images queued for thumbnailing again (they stay live meanwhile)`);
          return 0;
        } finally {
          await db.destroy();
        }
      }),
    );
}
