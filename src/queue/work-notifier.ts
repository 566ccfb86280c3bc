import pg from 'pg';
import { clientUrl } from '../db/client-config.ts';
import { connectionFailure } from '../db/connection-failure.ts';
import type { QueryBounds } from '../db/query-bounds.ts';
import { isNotAnswering } from '../db/database-error.ts';
import { errorMessage } from '../errors.ts';
import { endClient } from '../db/end-client.ts';

export const WORK_CHANNEL = 'lis_work';

/** What the notifier tells: once when its connection is lost (or cannot be made), once when it is back. */
export interface NotifierLog {
  warn(message: string): void;
  info(message: string): void;
}

export interface NotifierOptions {
  /** The service's bounds (serviceQueryBounds): a connect or a check left unanswered is a lost connection. */
  bounds: QueryBounds;
  /**
   * How often the connection is checked with a query. A LISTEN connection only reads: on a path that went
   * silent (its reset lost, a server that dropped it meanwhile) nothing ever fails, and no notification comes
   * again. TCP keepalive catches a peer whose host is gone, but not a path whose other end still answers the
   * probes (a frozen server's kernel, a proxy); the check does.
   */
  checkEveryMs: number;
}

/** TCP keepalive's idle time on the LISTEN connection: a peer whose host went away is found in the background. */
const KEEPALIVE_IDLE_MS = 30_000;
/** Reconnects back off from 0.5 s to this. */
const MAX_RETRY_MS = 30_000;
/** close() waits this long for a polite end, then cuts the socket (a path that went silent never answers it). */
const CLOSE_WAIT_MS = 1000;

/**
 * Listens for `lis_work` notifications (sent by the queue's operations and the
 * insert trigger when rows become claimable) so that an idle daemon wakes at
 * once; polling stays the fallback, so a lost connection only makes it slower,
 * never stuck. A lost connection (an error, its end, a check unanswered within
 * the bounds) is made again with backoff until it is back.
 */
export class WorkNotifier {
  private client: pg.Client | null = null;
  private waiters = new Set<() => void>();
  /** Wake-ups so far (notifications for our topic, a connection back): a wait given a count below it ends at once. */
  private woken = 0;
  private closed = false;
  /** Set from a loss until the connection is back: each is logged once, not every try. */
  private lost = false;
  private everListened = false;
  private tries = 0;
  private checking = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  /** Clients already given up: a client's error, end and failed connect each report the same loss. */
  private readonly dropped = new WeakSet<pg.Client>();

  constructor(
    private readonly url: string,
    private readonly topic: string,
    private readonly log: NotifierLog,
    private readonly options: NotifierOptions,
  ) {}

  async start(): Promise<void> {
    if (this.closed) return;
    this.checkTimer = setInterval(() => void this.check(), this.options.checkEveryMs).unref();
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const { bounds } = this.options;
    const client = new pg.Client({
      connectionString: clientUrl(this.url),
      application_name: 'imagesys:listen',
      connectionTimeoutMillis: bounds.connectMs,
      query_timeout: bounds.queryMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    });
    client.on('notification', (message) => {
      if (message.payload === this.topic) this.wakeAll();
    });
    client.on('error', (error) => this.drop(client, error));
    client.on('end', () => this.drop(client, new Error('the connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${WORK_CHANNEL}`);
    } catch (error) {
      this.drop(client, error);
      return;
    }
    if (this.closed || this.dropped.has(client)) return void cut(client);
    this.client = client;
    this.tries = 0;
    if (this.lost) {
      this.log.info('notification connection back: listening for work again');
      // What was notified while it was lost never comes: the idle daemon looks for work now, not at its next poll.
      this.wakeAll();
    }
    this.lost = false;
    this.everListened = true;
  }

  /** Gives a client up (once), says so if it is news, and tries again after a backoff. */
  private drop(client: pg.Client, error: unknown): void {
    if (this.dropped.has(client)) return;
    this.dropped.add(client);
    if (this.client === client) this.client = null;
    cut(client);
    if (this.closed) return;
    if (!this.lost) {
      // A bound that ran out reads "the database at host:port/db as user is not answering: ...", not pg's bare "timeout expired".
      const why = errorMessage((isNotAnswering(error) && connectionFailure(this.url, error)) || error);
      this.log.warn(
        this.everListened
          ? `notification connection lost: ${why}; polling until it is back`
          : `cannot listen for work notifications: ${why}; polling until it can`,
      );
    }
    this.lost = true;
    const delay = Math.min(MAX_RETRY_MS, 500 * 2 ** this.tries++);
    this.retryTimer = setTimeout(() => void this.connect(), delay).unref();
  }

  /** A query on the LISTEN connection, within the bounds: a path gone silent shows only this way. */
  private async check(): Promise<void> {
    const client = this.client;
    if (!client || this.checking) return;
    this.checking = true;
    try {
      await client.query('SELECT 1');
    } catch (error) {
      this.drop(client, error);
    } finally {
      this.checking = false;
    }
  }

  /**
   * The wake-ups so far, to pass to wait(): taken before a claim, it makes a notification that came while the
   * claim ran (its rows committed after the claim's snapshot, so not in what it read) end the wait that follows
   * at once. Without it that notification woke nobody, and its rows waited for the next poll.
   */
  mark(): number {
    return this.woken;
  }

  /**
   * Resolves on a notification for our topic, after `timeoutMs`, or when `signal` aborts; at once when a
   * wake-up came since `since` (mark()).
   */
  wait(timeoutMs: number, signal: AbortSignal, since = this.woken): Promise<void> {
    if (signal.aborted || this.woken > since) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done);
      this.waiters.add(done);
    });
  }

  private wakeAll(): void {
    this.woken++;
    for (const wake of [...this.waiters]) wake();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.checkTimer);
    this.wakeAll();
    const client = this.client;
    this.client = null;
    if (!client) return;
    this.dropped.add(client);
    await endClient(client, CLOSE_WAIT_MS);
  }
}

/** Ends a client's socket at once: a polite end would wait for a server that may never answer. */
function cut(client: pg.Client): void {
  client.end().catch(() => {});
  client.connection.stream.destroy();
}
