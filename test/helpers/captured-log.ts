import type { LisConfig } from '../../src/config/config-schema.ts';
import { createLogger, type Logger } from '../../src/log/create-logger.ts';

/** A logger that writes no files and keeps every error, warn and info line as `LEVEL message`, for a test to wait on. */
export function capturedLogger(component: string, log: LisConfig['log']): { log: Logger; lines: string[] } {
  const logger = createLogger({ component, log, screen: false, files: false });
  const lines: string[] = [];
  for (const level of ['error', 'warn', 'info'] as const) {
    const original = logger[level].bind(logger);
    (logger as unknown as Record<string, unknown>)[level] = (message: string, meta?: object) => {
      lines.push(`${level.toUpperCase()} ${message}`);
      return original(message, meta);
    };
  }
  return { log: logger, lines };
}
