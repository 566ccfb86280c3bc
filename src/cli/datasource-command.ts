import type { Command } from 'commander';
import { sql } from 'kysely';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { UsageError } from '../errors.ts';
import type { ThumbnailConfig } from '../config/thumbnail-config.ts';
import { detailsInForce, resolveDetails, storedDetails, validateDetails, type StoredDetails } from '../thumbnail/process-details.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

interface SetFlags {
  sharpen?: string;
  gamma?: string;
  quality?: string;
  default?: boolean;
}

/** `lis datasource set|show`: a datasource's process details (sharpen, gamma, quality) for lis_thumbnaild. */
export function addDatasourceCommand(program: Command): Command {
  const datasource = program.command('datasource').description("a datasource's thumbnail settings (sharpen, gamma, quality); enable or disable it");

  datasource
    .command('set')
    .description('set process details of one datasource; those not given stay as they are')
    .argument('<country>', 'e.g. uk')
    .argument('<datasource>', 'datasource id')
    .option('--sharpen <RADIUSxSIGMA>', 'ImageMagick notation, e.g. 0x1 (radius from sigma 1); 0x0 or none: no sharpening')
    .option('--gamma <g>', '1.0 = unchanged; above brightens, below darkens (0.1-10)')
    .option('--quality <q>', 'JPEG quality, 1-100')
    .option('--default', "forget this datasource's own settings: the config's defaults apply")
    .action((countryArg: string, idArg: string, flags: SetFlags, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = parseCountry(countryArg, config, 'country');
        const datasourceId = parseIntFlag('datasource', idArg, 0, 999_999_999);
        const given = validateDetails(flags);
        if (!flags.default && Object.keys(given).length === 0)
          throw new UsageError('datasource set: give at least one of --sharpen, --gamma, --quality (or --default)');
        if (flags.default && Object.keys(given).length) throw new UsageError('datasource set: --default cannot go with --sharpen, --gamma or --quality');
        return withDatabase(config, async (db) => {
          const columns = flags.default ? { sharpen: null, gamma: null, quality: null } : given;
          await db
            .insertInto('datasources')
            .values({ country, datasource_id: datasourceId, ...columns })
            .onConflict((oc) => oc.columns(['country', 'datasource_id']).doUpdateSet({ ...columns, updated_at: sql`now()` }))
            .execute();
          printDetails(country, datasourceId, await storedDetails(db, country, datasourceId), config.thumbnail.defaults);
          // Nothing made already changes by itself: say what does, or the old look stays for good unnoticed.
          console.log(
            `images thumbnailed before, or being thumbnailed now, keep the settings they were made with until \`lis rethumbnail --country ${country} --datasource ${datasourceId} --stale\` makes them again (they stay live meanwhile)`,
          );
        });
      }),
    );

  datasource
    .command('show')
    .description('show process details in force: one datasource, or every datasource of a country, or all')
    .argument('[country]', 'e.g. uk')
    .argument('[datasource]', 'datasource id')
    .action((countryArg: string | undefined, idArg: string | undefined, _flags: unknown, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = countryArg === undefined ? undefined : parseCountry(countryArg, config, 'country');
        const datasourceId = idArg === undefined ? undefined : parseIntFlag('datasource', idArg, 0, 999_999_999);
        return withDatabase(config, async (db) => {
          const { defaults } = config.thumbnail;
          console.log(`defaults (config thumbnail.defaults): sharpen ${defaults.sharpen}, gamma ${defaults.gamma}, quality ${defaults.quality}`);
          if (country !== undefined && datasourceId !== undefined) {
            printDetails(country, datasourceId, await storedDetails(db, country, datasourceId), defaults);
            return;
          }
          let query = db
            .selectFrom('datasources')
            .select(['country', 'datasource_id', 'sharpen', 'gamma', 'quality', 'enabled', 'disabled_reason'])
            .orderBy('country')
            .orderBy('datasource_id');
          if (country !== undefined) query = query.where('country', '=', country);
          for (const row of await query.execute()) {
            printDetails(row.country, row.datasource_id, row, defaults);
            if (!row.enabled)
              console.log(`  DISABLED: ${row.disabled_reason ?? 'no reason recorded'} (lis datasource enable ${row.country} ${row.datasource_id})`);
          }
        });
      }),
    );
  return datasource;
}

/**
 * One datasource's settings in force, `(default)` marked. A value no command would have written (put straight
 * into the table) is shown as it is, with what is wrong and how to put it right: its rows wait as
 * bad_process_details. The command had died on it (exit 2, a usage error, naming no datasource), so `show`
 * listed nothing past it, and `set` of another flag said "error" though its change was written.
 */
function printDetails(country: string, datasourceId: number, stored: StoredDetails, defaults: ThumbnailConfig['defaults']): void {
  const details = detailsInForce(stored, defaults);
  const mark = (own: unknown) => (own === null ? ' (default)' : '');
  console.log(
    `${country} ${datasourceId}: sharpen ${details.sharpen}${mark(stored.sharpen)}, gamma ${details.gamma}${mark(stored.gamma)}, quality ${details.quality}${mark(stored.quality)}`,
  );
  const invalid = invalidDetails(stored, defaults);
  if (invalid)
    console.log(
      `  INVALID: ${invalid}; its images are not thumbnailed (bad_process_details) until it is set right: lis datasource set ${country} ${datasourceId} --sharpen ... / --gamma ..., or --default`,
    );
}

/** Pure: what is wrong with a datasource's stored settings, or null. */
export function invalidDetails(stored: StoredDetails, defaults: ThumbnailConfig['defaults']): string | null {
  try {
    resolveDetails(stored, defaults);
    return null;
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
}
