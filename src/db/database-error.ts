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
 * True when the database did not answer in time: a bound of query-bounds.ts's QueryBounds ran out (pg's
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

/** Errors that mean the server could not be reached or would not let us in (no query ran). */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  '28P01',
  '28000',
  '3D000',
  '57P03',
  '53300',
]);

/**
 * Node's codes for a server certificate that TLS would not accept (sslmode verify-full, verify-ca, or require
 * with sslrootcert): self-signed, signed by a CA not trusted, expired, or for another host name.
 */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** pg's words when the URL asks for SSL and the server has it off. */
const NO_SSL_AT_SERVER = /^The server does not support SSL connections/;

/**
 * What is wrong with the SSL of a connect that failed, as a hint an operator can act on, or null when SSL is
 * not the cause. Such a failure is the URL's (or the server's certificate's), not an outage: waiting mends nothing.
 */
export function sslTrouble(error: unknown): string | null {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return "the server's certificate is for another host name: put a name it is for in the URL, or sslmode=verify-ca to check only the CA that signed it";
  if (typeof code === 'string' && CERTIFICATE_CODES.has(code))
    return (
      "the server's certificate was not accepted: give the CA that signed it with sslrootcert=/path/to/ca.crt in the URL " +
      '(sslmode=verify-full also checks the host name against it), or sslmode=require to encrypt without checking it'
    );
  if (typeof message !== 'string') return null;
  if (NO_SSL_AT_SERVER.test(message)) return 'the URL asks for SSL (sslmode) and the server has SSL off: turn ssl on at the server, or leave sslmode out';
  // pg_hba.conf has only hostssl lines for us: "no pg_hba.conf entry for host ..., no encryption".
  if (code === '28000' && /no encryption/.test(message))
    return 'the server accepts only SSL connections from here: add sslmode=verify-full&sslrootcert=/path/to/ca.crt (or sslmode=require) to the URL';
  return null;
}

/**
 * pg's words for a connection lost under a query: the socket closed, or a pooled client whose connection
 * broke before it was handed out ("Client has encountered a connection error and is not queryable").
 */
const LOST_CONNECTION = /Connection terminated|connect ETIMEDOUT|is not queryable/i;

/** True when `error` is one of pg's connect failures or a connection lost under a query (the sets above). */
export function isConnectError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return (
    (typeof e?.code === 'string' && (CONNECT_CODES.has(e.code) || CERTIFICATE_CODES.has(e.code))) ||
    (typeof e?.message === 'string' && (LOST_CONNECTION.test(e.message) || NO_SSL_AT_SERVER.test(e.message)))
  );
}

/**
 * SQLSTATEs of a server going away under a session: the connection class (08), a shutdown or restart
 * (57P01 administrator command, 57P02 crash, 57P03 not yet accepting), and too few resources to serve it (53).
 */
const OUTAGE_STATE = /^(08...|57P0[1-3]|53...)$/;

/**
 * True when `error` (or a cause of it) says the database is away, restarting or not answering: not a bug of the
 * code that met it, and not the row's or its source's doing. What a stage that throws on its chunk is charged
 * as (chunk-run.ts): `database`, not `internal`, so that operators read an outage as one. Pure.
 */
export function isDatabaseOutage(error: unknown): boolean {
  if (isNotAnswering(error)) return true;
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isConnectError(e)) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (e as { severity?: unknown }).severity !== undefined && OUTAGE_STATE.test(code)) return true;
  }
  return false;
}
