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

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
