import { runDaemon, type RunTotals } from '../../src/daemon/run-daemon.ts';
import { DownloadWorker } from '../../src/download/download-worker.ts';
import type { Logger } from '../../src/log/create-logger.ts';
import type { TestDatabase } from './test-database.ts';

/** lis_downloadd's worker run by hand in this process on uk (until no rows are gained), logging to `log`. */
export async function runDownloads(t: TestDatabase, log: Logger, workerId: string): Promise<RunTotals> {
  const worker = new DownloadWorker(t.config, t.db, 'uk');
  try {
    return await runDaemon(worker, {
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
}
