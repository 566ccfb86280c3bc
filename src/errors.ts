import { mappedStack } from './util/mapped-stack.ts';
/**
 * Errors an operator should read, with a stable `code` that scripts and tests
 * can match instead of the wording.
 */
export class LisError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LisError';
    this.code = code;
  }
}

export class ConfigError extends LisError {
  constructor(message: string) {
    super('ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}

export class UsageError extends LisError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

/**
 * ERR_DATABASE_FROZEN: lis_cron_frontend cut its run, the database having answered none of its probes for
 * upkeep.frozenDatabaseMinutes (its process stopped, its host hung). Not ERR_DATABASE_TIMEOUT, one bound
 * that ran out: the whole run was cut, its scans mid-way, and the next run takes over.
 */
export class DatabaseFrozenError extends LisError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DATABASE_FROZEN', message, options);
    this.name = 'DatabaseFrozenError';
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * A log line's fields for a bug (an error the code did not expect): its stack, which the line format writes below
 * the line, indented, at ERROR as at debug. A bug's one-line message ("Cannot read properties of undefined") says
 * nothing of where; the stack names src/<file>.ts:<line> (mappedStack), not the bundle's line. Our known errors,
 * LisError's codes, need no stack: their message names the fault.
 */
export function stackOf(error: unknown): { stack?: string } {
  return error instanceof Error && !(error instanceof LisError) && error.stack ? { stack: mappedStack(error.stack) } : {};
}
