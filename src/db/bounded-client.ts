import pg from 'pg';
import { isNotAnswering } from './database-error.ts';
import { notAnsweringError } from './connection-failure.ts';
import type { QueryBounds } from './query-bounds.ts';

/** Our own timer on a query runs this much past the server's statement_timeout: the server's cancel needs a moment to come. */
const QUERY_GRACE_MS = 2000;

/**
 * A pg client with QueryBounds, each query bounded twice. The server's statement_timeout cancels it there:
 * the connection stays sound, and a query we gave up on cannot commit later (a claim left waiting on a lock
 * took its rows after the runner had stopped waiting, rows that no chunk held). Our own timer (pg's
 * query_timeout) fires when the server cannot answer at all: a lost path, a frozen server. TCP keepalive
 * would not do: a frozen server's kernel answers the probes, and on a lost path Linux gives up only after
 * 9 probes 75 s apart. pg's query_timeout fails the query but keeps the connection, with the unanswered
 * query still first in line, so the next user of that pooled client would wait behind it: the connection
 * is ended (destroyed, as a query is active) and the pool drops it.
 */
export function boundedClient(url: string, bounds: QueryBounds): typeof pg.Client {
  const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
  class BoundedClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({
        ...config,
        connectionTimeoutMillis: bounds.connectMs,
        // The server's statement_timeout and idle bound are set on the session (sessionSettingsOf), not here.
        ...(bounds.queryMs === undefined ? { keepAlive: true } : { query_timeout: bounds.queryMs + QUERY_GRACE_MS }),
      });
    }

    // The pool connects with a callback; pg's bare "timeout expired" becomes a line an operator can read.
    // @ts-expect-error pg's connect() has a promise and a callback form; this forwards both.
    override connect(callback?: (error: Error | null) => void): unknown {
      const named = (error: Error) => (isNotAnswering(error) ? notAnsweringError(url, `no answer to a connect in ${seconds(bounds.connectMs)}`, error) : error);
      if (callback) return super.connect((error: Error | null) => callback(error && named(error)));
      return super.connect().catch((error: Error) => Promise.reject(named(error)));
    }

    // @ts-expect-error pg's query() has a dozen overloads; this forwards them all, wrapping the promise and callback forms.
    override query(...args: unknown[]): unknown {
      const named = (error: Error) => {
        if (!isNotAnswering(error)) return error;
        // The server's own cancel (57014) leaves the connection sound; our timer's does not.
        if ((error as { code?: unknown }).code !== '57014') this.end().catch(() => {});
        return notAnsweringError(url, bounds.queryMs === undefined ? 'no reply to a query' : `no reply to a query in ${seconds(bounds.queryMs)}`, error);
      };
      const last = args.at(-1);
      if (typeof last === 'function') {
        const callback = last as (error: Error | null, ...rest: unknown[]) => void;
        args[args.length - 1] = (error: Error | null, ...rest: unknown[]) => callback(error && named(error), ...rest);
      }
      const result = (super.query as (...a: unknown[]) => unknown)(...args);
      return result instanceof Promise ? result.catch((error: Error) => Promise.reject(named(error))) : result;
    }
  }
  return BoundedClient as unknown as typeof pg.Client;
}
