import fs from 'node:fs';
import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import type { LisConfig } from '../config/config-schema.ts';
import { formatLine } from './line-format.ts';

export type Logger = winston.Logger;

export interface LoggerOptions {
  /** File names: `<component>.log` and `<component>.error.log`. */
  component: string;
  log: LisConfig['log'];
  /** Print to the terminal as well (a run by hand). */
  screen: boolean;
  /** `--verbose`: debug lines too. */
  verbose?: boolean;
  country?: string;
  /** Tests write to files only when they ask to. */
  files?: boolean;
}

const lineFormat = winston.format.printf((info) =>
  formatLine({
    time: new Date(),
    level: info.level,
    scope: info.scope as string | undefined,
    pid: process.pid,
    country: info.country as string | undefined,
    message: String(info.message),
    detail: info.stack && info.level === 'debug' ? String(info.stack) : undefined,
  }),
);

/**
 * One logger per process: every line to `<component>.log`, errors also to
 * `<component>.error.log`, both rotated daily and by size and pruned after
 * `log.maxFiles`; and to the screen when run by hand.
 */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.verbose ? 'debug' : options.log.level;
  const transports: winston.transport[] = [];
  if (options.files !== false) {
    fs.mkdirSync(options.log.dir, { recursive: true });
    const common = {
      dirname: options.log.dir,
      datePattern: 'YYYY-MM-DD',
      maxFiles: options.log.maxFiles,
      maxSize: options.log.maxSize,
      // The current file keeps its plain name, so `tail -f downloadd.log` follows it across rotations.
      createSymlink: true,
      auditFile: `${options.log.dir}/.${options.component}-audit.json`,
    };
    transports.push(
      new DailyRotateFile({ ...common, filename: `${options.component}-%DATE%.log`, symlinkName: `${options.component}.log` }),
      new DailyRotateFile({
        ...common,
        level: 'warn',
        filename: `${options.component}.error-%DATE%.log`,
        symlinkName: `${options.component}.error.log`,
        auditFile: `${options.log.dir}/.${options.component}-error-audit.json`,
      }),
    );
  }
  if (options.screen) transports.push(new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] }));
  if (transports.length === 0) transports.push(new winston.transports.Console({ silent: true }));
  return winston.createLogger({
    level,
    format: lineFormat,
    defaultMeta: options.country ? { country: options.country } : {},
    transports,
  });
}

/** Closes the files so that a process can exit with every line written. */
export async function closeLogger(logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    logger.on('finish', () => resolve());
    logger.end();
    setTimeout(resolve, 2000).unref();
  });
}
