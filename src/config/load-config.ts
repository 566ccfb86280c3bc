import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { configSchema, hostNameSchema, type LisConfig } from './config-schema.ts';
import { describeIssues } from './describe-issues.ts';
import { jsonSyntaxError } from './json-syntax-error.ts';

/** Looked for in the working folder when neither --config nor LIS_CONFIG names a file. */
export const DEFAULT_CONFIG_FILE = 'imagesys.json';

export interface LoadConfigOptions {
  /** A path given on the command line; wins over LIS_CONFIG. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Which file to read, or null for the built-in defaults. */
export function configFilePath({ file, env = process.env, cwd = process.cwd() }: LoadConfigOptions): string | null {
  if (file) return path.resolve(cwd, file);
  if (env.LIS_CONFIG) return path.resolve(cwd, env.LIS_CONFIG);
  const local = path.resolve(cwd, DEFAULT_CONFIG_FILE);
  return fs.existsSync(local) ? local : null;
}

/** Validates a parsed object, resolving relative paths against `cwd`. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), source = 'config'): LisConfig {
  // Only "nothing given" means the defaults: a file holding `null` is a mistake (an
  // emptied or half-written file), not a request to run on the embedded server.
  const result = configSchema.safeParse(raw === undefined ? {} : raw);
  if (!result.success) throw new ConfigError(`${source} is not valid:\n${describeIssues(result.error, configSchema)}`);
  const config = result.data;
  if (env.LIS_DATABASE_URL) {
    if (!/^postgres(ql)?:\/\//.test(env.LIS_DATABASE_URL)) {
      throw new ConfigError('LIS_DATABASE_URL is not valid: expected a postgres:// or postgresql:// URL');
    }
    config.database.url = env.LIS_DATABASE_URL;
  }
  if (env.LIS_HOST) {
    // The same rule as `host`: the override must not bring in what the file may not (a colon would split worker ids).
    const host = hostNameSchema.safeParse(env.LIS_HOST);
    if (!host.success) throw new ConfigError(`LIS_HOST ${JSON.stringify(env.LIS_HOST)} is not valid: ${host.error.issues.map((i) => i.message).join('; ')}`);
    config.host = host.data;
  }
  if (env.LIS_SMTP_PASSWORD) config.alerts.smtp.password = env.LIS_SMTP_PASSWORD;
  const resolve = (p: string) => path.resolve(cwd, p);
  config.database.embedded.dataDir = resolve(config.database.embedded.dataDir);
  config.stores.originals = resolve(config.stores.originals);
  config.stores.thumbnails = resolve(config.stores.thumbnails);
  config.log.dir = resolve(config.log.dir);
  config.services.runDir = resolve(config.services.runDir);
  if (config.imaged.placeholder) config.imaged.placeholder = resolve(config.imaged.placeholder);
  for (const origin of Object.values(config.imaged.origins)) {
    for (const source of origin.sources) if (source.type === 'folder') source.dir = resolve(source.dir);
  }
  return config;
}

/** Reads and validates the configuration; throws ConfigError with every problem found. */
export function loadConfig(options: LoadConfigOptions = {}): LisConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = configFilePath({ ...options, env, cwd });
  if (!file) return parseConfig({}, env, cwd, 'the default config');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // Said by line and column, never with Node's message, which quotes the text around the fault: a secret, often.
    const at = jsonSyntaxError(text);
    throw new ConfigError(`config file ${file} is not valid JSON${at ? `: line ${at.line}, column ${at.column}: ${at.what}` : ''}`);
  }
  return parseConfig(raw, env, cwd, `config file ${file}`);
}
