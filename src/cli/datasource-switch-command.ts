import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import type { Db } from '../db/connect.ts';
import { withDatabase } from '../db/with-database.ts';
import { LisError } from '../errors.ts';
import { disableDatasource, enableDatasource } from '../manager/datasource-switch.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** Parses COUNTRY and ID, opens the database, runs `fn`, and closes it again. */
function withDatasource(command: Command, countryArg: string, idArg: string, fn: (db: Db, country: string, id: number) => Promise<void>): Promise<void> {
  return runCommand(async () => {
    const config = loadConfig({ file: configFileOf(command) });
    const country = parseCountry(countryArg, config, 'country');
    const id = parseIntFlag('datasource', idArg, 0, 999_999_999);
    return withDatabase(config, (db) => fn(db, country, id));
  });
}

/** `lis datasource enable|disable COUNTRY ID`: what lis_managerd does to a failing datasource, by hand. */
export function addDatasourceSwitchCommands(datasource: Command): void {
  datasource
    .command('enable')
    .description('re-open a datasource: its parked rows wait for the daemons again, attempts reset')
    .argument('<country>', 'e.g. uk')
    .argument('<datasource>', 'datasource id')
    .action((countryArg: string, idArg: string, _flags: unknown, command: Command) =>
      withDatasource(command, countryArg, idArg, async (db, country, id) => {
        const unparked = await enableDatasource(db, country, id);
        if (unparked === null) throw new LisError('ERR_NO_DATASOURCE', `no datasource ${id} in ${country}`);
        console.log(`datasource ${id} of ${country} enabled; ${unparked} parked rows put back in the queue`);
      }),
    );

  datasource
    .command('disable')
    .description('stop working a datasource: its waiting rows are parked, new ones parked as they come')
    .argument('<country>', 'e.g. uk')
    .argument('<datasource>', 'datasource id')
    .requiredOption('--reason <text>', 'why, for the other operators')
    .action((countryArg: string, idArg: string, flags: { reason: string }, command: Command) =>
      withDatasource(command, countryArg, idArg, async (db, country, id) => {
        const parked = await disableDatasource(db, country, id, `by hand: ${flags.reason}`);
        console.log(`datasource ${id} of ${country} disabled; ${parked} waiting rows parked`);
      }),
    );
}
