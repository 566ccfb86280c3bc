import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { collectReport } from './collect-report.ts';
import { formatReport } from './format-report.ts';

/** lis_metrics [--country uk] [--json] */
export async function metricsMain(argv = process.argv): Promise<void> {
  const program = cliProgram('lis_metrics')
    .description('rows per country and state, the queue and its age, throughput, datasource failure rates, frontend lag, store disk use')
    .option('--country <code>', 'only this country')
    .option('--json', 'machine-readable')
    .option('--config <file>', 'config file')
    .showHelpAfterError();
  program.parse(argv);
  const flags = program.opts<{ country?: string; json?: boolean; config?: string }>();
  await runCommand(async () => {
    const config = loadConfig({ file: flags.config });
    const country = flags.country === undefined ? undefined : parseCountry(flags.country, config);
    return withDatabase(
      config,
      async (db) => {
        const report = await collectReport(db, config, country);
        console.log(flags.json ? JSON.stringify(report, null, 2) : formatReport(report));
      },
      { readOnly: true },
    );
  });
}
