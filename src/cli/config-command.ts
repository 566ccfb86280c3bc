import type { Command } from 'commander';
import type { LisConfig } from '../config/config-schema.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { configFileOf } from './global-options.ts';

/** Pure: the configuration as `lis config` prints it, every secret in it hidden (passwords, tokens, keys). */
export function withSecretsHidden(config: LisConfig): LisConfig {
  const shown = structuredClone(config);
  if (shown.database.url) shown.database.url = maskUrlPasswords(shown.database.url);
  shown.database.embedded.password = '***';
  if (shown.alerts.smtp.password) shown.alerts.smtp.password = '***';
  if (shown.alerts.webhookUrl) shown.alerts.webhookUrl = '***';
  if (shown.manager.webhookUrl) shown.manager.webhookUrl = '***';
  // A proxy URL may carry its login (http://user:pass@proxy:3128); a bucket's secret key is a password.
  if (shown.download.proxy) shown.download.proxy = maskUrlPasswords(shown.download.proxy);
  for (const bucket of Object.values(shown.imaged.s3)) bucket.secretAccessKey = '***';
  return shown;
}

/** `lis config`: the configuration in force (defaults filled in, secrets hidden), or its errors. */
export function addConfigCommand(program: Command): void {
  program
    .command('config')
    .description('validate the configuration and print it with every default filled in')
    .action((_, command: Command) =>
      runCommand(() => {
        const file = configFileOf(command);
        const config = loadConfig({ file });
        console.error(`# from ${configFilePath({ file }) ?? 'built-in defaults (no config file)'}`);
        console.log(JSON.stringify(withSecretsHidden(config), null, 2));
      }),
    );
}
