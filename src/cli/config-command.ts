import type { Command } from 'commander';
import type { LisConfig } from '../config/config-schema.ts';
import { configFileExposure } from '../config/config-file-exposure.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { configFileOf } from './global-options.ts';

/** Pure: the configuration as `lis config` prints it, every secret in it hidden (passwords, tokens, keys). */
export function withSecretsHidden(config: LisConfig): LisConfig {
  // Every URL's password, wherever it is (database.url, download.proxy, an http origin's baseUrl, ...): a key
  // added later that takes a URL is covered without being named here.
  const shown = maskEveryUrl(structuredClone(config));
  shown.database.embedded.password = '***';
  if (shown.alerts.smtp.password) shown.alerts.smtp.password = '***';
  if (shown.alerts.webhookUrl) shown.alerts.webhookUrl = '***';
  if (shown.manager.webhookUrl) shown.manager.webhookUrl = '***';
  // A bucket's secret key is a password.
  for (const bucket of Object.values(shown.imaged.s3)) bucket.secretAccessKey = '***';
  return shown;
}

/** Pure: `value` with maskUrlPasswords applied to each string in it, however deep. */
function maskEveryUrl<T>(value: T): T {
  if (typeof value === 'string') return maskUrlPasswords(value) as T;
  if (Array.isArray(value)) return value.map(maskEveryUrl) as T;
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskEveryUrl(v)])) as T;
  return value;
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
        const exposed = configFileExposure(configFilePath({ file }));
        if (exposed) console.error(`# warning: ${exposed}`);
        console.log(JSON.stringify(withSecretsHidden(config), null, 2));
      }),
    );
}
