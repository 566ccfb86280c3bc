/**
 * SQLSTATE classes that no retry can mend: the statement or the schema is
 * wrong (42: syntax, undefined table or column), the data breaks a rule (22,
 * 23), the login or database is wrong (28, 3D), or the feature is missing
 * (0A). Anything else (08 connection, 57 shutdown, 53 resources, 40
 * deadlock, a socket error) may pass and is waited out.
 */
const PERMANENT_CLASSES = new Set(['0A', '22', '23', '26', '28', '2B', '34', '3D', '3F', '42', '44']);

/** The SQLSTATE of a PostgreSQL error that retrying cannot fix, or null (an outage, or not a database error). */
export function permanentSqlState(error: unknown): string | null {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (
      typeof code === 'string' &&
      /^[0-9A-Z]{5}$/.test(code) &&
      (e as { severity?: unknown }).severity !== undefined &&
      PERMANENT_CLASSES.has(code.slice(0, 2))
    )
      return code;
  }
  return null;
}

/**
 * True when the database did not answer in time: a bound of connect.ts's QueryBounds ran out (pg's
 * "timeout expired" on a connect, "Query read timeout" on a query, the server's statement_timeout
 * (57014), or our ERR_DATABASE_TIMEOUT wrapping one of them). The database hangs, rather than refuses: an outage all the same, ours, waited out.
 */
export function isNotAnswering(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (code === 'ERR_DATABASE_TIMEOUT' || message === 'timeout expired' || message === 'Query read timeout') return true;
    if (code === '57014' && typeof message === 'string' && /statement timeout/.test(message)) return true;
  }
  return false;
}
