import { LisError, errorMessage } from '../errors.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { isConnectError, isNotAnswering, sslTrouble } from './database-error.ts';

/** `127.0.0.1:54329/imagesys as imagesys`: where a URL leads, without its password. */
export function describeServer(url: string): string {
  try {
    const u = new URL(url);
    const user = decodeURIComponent(u.username);
    return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname || '/'}${user ? ` as ${user}` : ''}`;
  } catch {
    return maskUrlPasswords(url);
  }
}

/**
 * A failure to connect as an operator should read it: "cannot connect to the
 * database at 127.0.0.1:54329/imagesys as imagesys: connect ECONNREFUSED
 * ..." (what the server is, never the password); ERR_DATABASE_TIMEOUT, "the
 * database at ... is not answering", when a bound of QueryBounds ran out
 * (the server accepted, or had the connection, and said nothing). Null for other errors.
 */
export function connectionFailure(url: string, error: unknown): LisError | null {
  if (isNotAnswering(error)) {
    if (error instanceof LisError) return error;
    return notAnsweringError(url, errorMessage(error) === 'timeout expired' ? 'no answer to a connect in time' : errorMessage(error), error);
  }
  const refused = refusedStartupParameter(error);
  if (refused)
    return new LisError(
      'ERR_DATABASE',
      `cannot connect to the database at ${describeServer(url)}: ${errorMessage(error)} (a pooler in front refuses a parameter of the URL: ` +
        `take ${refused} out of the URL and set it on the role instead, ALTER ROLE ... SET, or list it in pgbouncer's ignore_startup_parameters)`,
      { cause: error },
    );
  if (!isConnectError(error)) return null;
  const e = error as { code?: string };
  const ssl = sslTrouble(error);
  const hint = ssl ? ` (${ssl})` : e.code === 'ECONNREFUSED' ? ' (is the server running? `npx lis db status`)' : e.code === '28P01' ? ' (wrong password)' : '';
  return new LisError('ERR_DATABASE', `cannot connect to the database at ${describeServer(url)}: ${errorMessage(error)}${hint}`, { cause: error });
}

/**
 * The startup parameter a pooler refused (pgbouncer: `unsupported startup parameter: options`), or null. We send
 * none but application_name (session-settings.ts): the URL's own (`options=-c search_path=...`) are. Pure.
 */
export function refusedStartupParameter(error: unknown): string | null {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? (/^unsupported startup parameter: (\S+)/.exec(message)?.[1] ?? null) : null;
}

/** ERR_DATABASE_TIMEOUT: the line an operator reads for a bound that ran out. */
export function notAnsweringError(url: string, what: string, cause: unknown): LisError {
  return new LisError('ERR_DATABASE_TIMEOUT', `the database at ${describeServer(url)} is not answering: ${what}`, { cause });
}
