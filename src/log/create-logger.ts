import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import type { LisConfig } from '../config/config-schema.ts';
import { formatLine } from './line-format.ts';
import { checkLogDir } from './log-dir-check.ts';

export type Logger = winston.Logger;

export interface LoggerOptions {
  /** File names: `<component>.<country>.log` and `<component>.<country>.error.log` (no country: `<component>.log`). */
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
    detail: (info.level === 'debug' || info.level === 'error') && typeof info.stack === 'string' && info.stack ? info.stack : undefined,
  }),
);

/**
 * The files' base name: one per daemon instance (`downloadd.uk`), because
 * winston-daily-rotate-file rotates a file from one process only; two
 * countries' daemons sharing `downloadd.log` would rotate it under each other.
 */
export function logBaseName(component: string, country: string | undefined): string {
  return country ? `${component}.${country}` : component;
}

/**
 * One logger per process: every line to `<base>.log`, errors also to
 * `<base>.error.log` (base: `downloadd.uk`, see logBaseName), both rotated
 * daily and by size and pruned after `log.maxFiles`; and to the screen when
 * run by hand.
 */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.verbose ? 'debug' : options.log.level;
  const transports: winston.transport[] = [];
  const base = logBaseName(options.component, options.country);
  if (options.files !== false) {
    checkLogDir(options.log.dir, base);
    const common = {
      dirname: options.log.dir,
      datePattern: 'YYYY-MM-DD',
      maxFiles: options.log.maxFiles,
      maxSize: options.log.maxSize,
      // The current file keeps its plain name, so `tail -f downloadd.uk.log` follows it across rotations.
      createSymlink: true,
      auditFile: `${options.log.dir}/.${base}-audit.json`,
      // Its owner's and group's only (as Debian's own logs, 0640): a line names the URL fetched, a signed URL's token
      // with it, which other users of the machine should not read.
      options: { flags: 'a', mode: 0o640 },
    };
    transports.push(
      new DailyRotateFile({ ...common, filename: `${base}-%DATE%.log`, symlinkName: `${base}.log` }),
      new DailyRotateFile({
        ...common,
        level: 'warn',
        filename: `${base}.error-%DATE%.log`,
        symlinkName: `${base}.error.log`,
        auditFile: `${options.log.dir}/.${base}-error-audit.json`,
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
  const files = logger.transports.filter((t): t is DailyRotateFile => t instanceof DailyRotateFile);
  await withDeadline(
    new Promise<void>((resolve) => {
      logger.once('finish', () => resolve());
      logger.end();
    }),
  );
  // The logger's 'finish' (winston waits for its transports') means every line reached the file
  // transports, not the disk: end each transport's file stream and wait until it has flushed.
  await withDeadline(
    Promise.all(
      files.map(
        (t) =>
          new Promise<void>((resolve) => {
            const stream = (t as unknown as { logStream?: NodeJS.WritableStream }).logStream;
            if (!stream) return resolve();
            stream.end(() => resolve());
          }),
      ),
    ),
  );
}

/** A stuck stream must not keep a stopping process alive: give up after a few seconds. */
function withDeadline(promise: Promise<unknown>, ms = 5000): Promise<void> {
  return new Promise<void>((resolve) => {
    // Not unref'd: an exiting process waits these few seconds rather than lose its last lines.
    const timer = setTimeout(resolve, ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
