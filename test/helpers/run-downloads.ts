import { runDaemon, type RunTotals } from '../../src/daemon/run-daemon.ts';
import { DownloadWorker } from '../../src/download/download-worker.ts';
import type { Logger } from '../../src/log/create-logger.ts';
import { waitFor } from './processes.ts';
import type { TestDatabase } from './test-database.ts';

/**
 * lis_downloadd's worker run by hand in this process on uk (until no rows are gained), logging to `log`.
 * Returns once its worker row is marked stopped: the run's last heartbeat, which writes the outcomes the
 * run's figures and alerts read (worker_minutes, datasource_minutes), is bounded at 2 s by runDaemon and may
 * still be under way when it returns; the mark comes after it (the beat's transaction holds the worker row's lock).
 */
export async function runDownloads(t: TestDatabase, log: Logger, workerId: string): Promise<RunTotals> {
  const worker = new DownloadWorker(t.config, t.db, 'uk');
  let totals: RunTotals;
  try {
    totals = await runDaemon(worker, {
      config: t.config,
      db: t.db,
      databaseUrl: t.url,
      log,
      country: 'uk',
      chunkSize: 10,
      service: false,
      signal: new AbortController().signal,
      workerId,
    });
  } finally {
    worker.close();
  }
  await waitFor(
    async () => (await t.db.selectFrom('workers').select('id').where('id', '=', workerId).where('stopped_at', 'is not', null).executeTakeFirst()) !== undefined,
    20_000,
    `worker ${workerId} marked stopped (its last heartbeat written)`,
  );
  return totals;
}
