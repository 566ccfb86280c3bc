import type { Command } from 'commander';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { redactUrl } from '../db/connect.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis config`: the configuration in force (defaults filled in, secrets hidden), or its errors. */
export function addConfigCommand(program: Command): void {
  program
    .command('config')
    .description('validate the configuration and print it with every default filled in')
    .action((_, command: Command) =>
      runCommand(() => {
        const file = configFileOf(command);
        const config = loadConfig({ file });
        const shown = structuredClone(config);
        if (shown.database.url) shown.database.url = redactUrl(shown.database.url);
        shown.database.embedded.password = '***';
        if (shown.alerts.smtp.password) shown.alerts.smtp.password = '***';
        if (shown.alerts.webhookUrl) shown.alerts.webhookUrl = '***';
        if (shown.manager.webhookUrl) shown.manager.webhookUrl = '***';
        console.error(`# from ${configFilePath({ file }) ?? 'built-in defaults (no config file)'}`);
        console.log(JSON.stringify(shown, null, 2));
      }),
    );
}
