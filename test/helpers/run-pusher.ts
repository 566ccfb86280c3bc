import fs from 'node:fs';
import type { LisConfigInput } from '../../src/config/config-schema.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { runDaemon, type RunTotals } from '../../src/daemon/run-daemon.ts';
import { closeLogger, createLogger } from '../../src/log/create-logger.ts';
import { createPusher } from '../../src/push/pusherd-main.ts';
import type { TestDatabase } from './test-database.ts';

/** One run by hand of the pusher (chunk loop and backfill) in this process, as bin/lis_pusherd does it, with fast backoff. */
export async function runPusherOnce(t: TestDatabase, overrides: LisConfigInput = {}, chunkSize = 40): Promise<RunTotals> {
  const config = parseConfig(
    { ...JSON.parse(fs.readFileSync(t.writeConfig(), 'utf8')), queue: { backoff: { baseSeconds: 0.01, jitter: 0 } }, ...overrides },
    {},
    t.dir,
  );
  const log = createLogger({ component: 'pusherd', log: config.log, screen: false, country: 'uk' });
  const controller = new AbortController();
  try {
    const worker = await createPusher({ config, db: t.db, log, country: 'uk', chunkSize, service: false, signal: controller.signal });
    return await runDaemon(worker, {
      config,
      db: t.db,
      databaseUrl: t.url,
      log,
      country: 'uk',
      chunkSize,
      service: false,
      signal: controller.signal,
      workerId: 'test:1',
    });
  } finally {
    await closeLogger(log);
  }
}
