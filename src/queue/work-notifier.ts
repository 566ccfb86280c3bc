import pg from 'pg';
import { errorMessage } from '../errors.ts';

export const WORK_CHANNEL = 'lis_work';

/**
 * Listens for `lis_work` notifications (sent by the queue's operations and the
 * insert trigger when rows become claimable) so that an idle daemon wakes at
 * once; polling stays the fallback,
 * so a lost connection only makes it slower, never stuck.
 */
export class WorkNotifier {
  private client: pg.Client | null = null;
  private waiters = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly topic: string,
    private readonly onError: (message: string) => void = () => {},
  ) {}

  async start(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, application_name: 'imagesys:listen' });
    client.on('notification', (message) => {
      if (message.payload === this.topic) this.wakeAll();
    });
    client.on('error', (error) => {
      this.onError(`notification connection lost: ${errorMessage(error)}; polling until it is back`);
      this.client = null;
      client.end().catch(() => {});
      setTimeout(() => void this.start().catch(() => {}), 5000).unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${WORK_CHANNEL}`);
      this.client = client;
    } catch (error) {
      this.onError(`cannot listen for work notifications: ${errorMessage(error)}; polling instead`);
      client.end().catch(() => {});
      setTimeout(() => void this.start().catch(() => {}), 5000).unref();
    }
  }

  /** Resolves on a notification for our topic, after `timeoutMs`, or when `signal` aborts. */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
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
    for (const wake of [...this.waiters]) wake();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeAll();
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}
