import type pg from 'pg';

/**
 * The server settings every session of ours runs with, whatever the DBA set for the role or the database
 * (`ALTER ROLE ... SET`, `ALTER DATABASE ... SET`, postgresql.conf):
 * - DateStyle ISO and IntervalStyle postgres: pg reads timestamps and intervals in those forms only. Under
 *   `DateStyle = 'SQL, DMY'` every timestamp read came back null (`lis worker-report` crashed on it).
 * - read committed: the queue's claims, finishes and rechecks are written for it; under a default of
 *   `serializable` its SKIP LOCKED claims and batch finishes fail with serialization errors under load.
 * - statement_timeout and lock_timeout: ours (QueryBounds), 0 where our work is deliberately unbounded (a
 *   migration, the weekly scans, the CLI's bulk changes): a role's lower statement_timeout cut those and was
 *   reported as a database that does not answer.
 * - idle_in_transaction_session_timeout: ours where we set one, else the server's.
 * - idle_session_timeout (PostgreSQL 14+) off: a session of ours idles on purpose while it holds what lives in the
 *   session (the work notifier's LISTEN, the weekly upkeep's lock while it walks the stores, backfill's claims), and
 *   our pools close their idle connections themselves. A role's short one ended them: the upkeep's lock went with
 *   its session mid-run (free for another host's run of the country), an idle daemon's LISTEN with its. Where the setting does not exist (13) nothing is set.
 * Set with a statement once connected, not as startup parameters: a pooler in front (pgbouncer) refuses
 * startup parameters it does not know (`unsupported startup parameter: options`, `...: statement_timeout`).
 */
export interface SessionSettings {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionMs?: number;
}

/** The statement that sets them, with its values. Pure. */
export function sessionSettingsQuery(settings: SessionSettings): { text: string; values: string[] } {
  const pairs: [string, string][] = [
    ['DateStyle', 'ISO, MDY'],
    ['IntervalStyle', 'postgres'],
    ['default_transaction_isolation', 'read committed'],
    ['statement_timeout', `${Math.round(settings.statementTimeoutMs)}`],
    ['lock_timeout', `${Math.round(settings.lockTimeoutMs)}`],
  ];
  if (settings.idleInTransactionMs) pairs.push(['idle_in_transaction_session_timeout', `${Math.round(settings.idleInTransactionMs)}`]);
  // current_setting's missing_ok: NULL on a server without it, and CASE sets nothing then.
  const idle = `CASE WHEN current_setting('idle_session_timeout', true) IS NOT NULL THEN set_config('idle_session_timeout', '0', false) END`;
  return {
    text: `SELECT ${pairs.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, false)`).join(', ')}, ${idle}`,
    values: pairs.flat(),
  };
}

/**
 * A pg client class that sets `settings` on its session as soon as it is connected, before any query of its
 * user (a pool's connect callback, or the promise, waits for it). A session whose settings fail is ended, and
 * the connect fails with that error.
 */
export function withSessionSettings(Base: typeof pg.Client, settings: SessionSettings): typeof pg.Client {
  const { text, values } = sessionSettingsQuery(settings);
  class SessionClient extends Base {
    // @ts-expect-error pg's connect() has a promise and a callback form; this serves both.
    override connect(callback?: (error: Error | null) => void): unknown {
      // An error the server sends while no query is active (a FATAL 57P01 as it shuts down, in the same chunk as
      // the settings' answer) is an 'error' event, and nobody listens yet: the pool's listener comes once this
      // connect is done, and an unheard 'error' event kills the process. Heard here, it fails the connect.
      let lost: Error | null = null;
      const hear = (error: Error) => (lost ??= error);
      this.on('error', hear);
      const connected = (super.connect() as Promise<unknown>)
        .then(() => (Base.prototype.query as (this: unknown, text: string, values: string[]) => Promise<unknown>).call(this, text, values))
        .then(
          () => {
            if (lost) throw lost;
          },
          (error: Error) => {
            throw lost ?? error;
          },
        )
        .catch((error: Error) => {
          this.end().catch(() => {});
          throw error;
        })
        .finally(() => this.off('error', hear));
      if (!callback) return connected;
      connected.then(
        () => callback(null),
        (error: Error) => callback(error),
      );
      return undefined;
    }
  }
  return SessionClient as unknown as typeof pg.Client;
}
