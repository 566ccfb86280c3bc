import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { UsageError } from '../errors.ts';
import { heldFromRework, reworkRows } from '../queue/rework-rows.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/**
 * `lis rethumbnail [--country uk] [--datasource N] [--preset NAME] [--stale] [--limit N]`:
 * live images thumbnailed again (changed process details, a new preset), while
 * they stay live: the new files get new names and replace the old ones only
 * once they are on every enabled frontend. New images are worked first.
 * Images waiting in push go back too (made before the change, they would go live
 * with the old settings); those a worker holds cannot be moved, and are counted,
 * with the way to catch them once they are done (`--stale`).
 */
export function addRethumbnailCommand(program: Command): void {
  program
    .command('rethumbnail')
    .description('thumbnail live images again (they stay live; the new version replaces the old once on every frontend)')
    .option('--country <code>', 'only this country (default: all)')
    .option('--datasource <id>', 'only this datasource (with --country)')
    .option('--preset <name>', 'only images that lack this preset (one of thumbnail.presets, e.g. one just added)')
    .option('--stale', "only images not made with their datasource's settings now in force (lis datasource set)")
    .option('--limit <n>', 'at most this many (lowest ids first)')
    .action((opts: { country?: string; datasource?: string; preset?: string; stale?: boolean; limit?: string }, command: Command) =>
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
        return withDatabase(config, async (db) => {
          const filter = {
            country,
            datasourceId,
            missingPreset: opts.preset,
            staleDetails: opts.stale ? { defaults: config.thumbnail.defaults } : undefined,
          };
          const n = await reworkRows(db, 'thumbnail', { ...filter, waitingInPush: true, limit });
          console.log(`${n} images queued for thumbnailing again (live ones stay live meanwhile)`);
          // Rows a worker holds right now were (or are being) made before the change: moved by nobody, they go live so.
          const held = await heldFromRework(db, filter);
          if (held > 0) console.log(heldNotice(held, { country, datasource: datasourceId?.toString(), preset: opts.preset }));
          return 0;
        });
      }),
    );
}

/**
 * Pure: what to tell of rows a worker held, which the rework could not move: the command that catches them
 * once they are live. A preset's is the same command (it takes only images that lack it); else `--stale`
 * takes the images not made with the settings in force, and not the whole datasource again.
 */
export function heldNotice(held: number, opts: { country?: string; datasource?: string; preset?: string }): string {
  const flag = (name: string, value: string | undefined) => (value === undefined ? [] : [name, value]);
  const again = ['lis rethumbnail', ...flag('--country', opts.country), ...flag('--datasource', opts.datasource), ...flag('--preset', opts.preset)];
  if (opts.preset === undefined) again.push('--stale');
  const takes = opts.preset === undefined ? 'takes every image not made with the settings in force' : `takes those that still lack ${opts.preset}`;
  return `${held} more are being thumbnailed or pushed right now, perhaps made with what was in force before: once they are live, \`${again.join(' ')}\` ${takes}`;
}
