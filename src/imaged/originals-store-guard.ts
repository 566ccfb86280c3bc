import type { LisConfig } from '../config/config-schema.ts';
import { assertStoreMounted } from '../daemon/store-check.ts';
import type { Db } from '../db/connect.ts';
import { rowsPastStageOnHost } from '../queue/queue-figures.ts';

/**
 * lis_imaged's guard before it makes a folder in the originals store (a queued row's download, an origin key's, a
 * lost original fetched again), as lis_downloadd's: made only in a store that is mounted. Made in the empty folder of
 * a disk not mounted, the original went to the host's own disk, and lis_downloadd's next check took that folder, no
 * longer empty, for the store and marked it.
 */
export function originalsStoreGuard(db: Db, config: LisConfig): () => Promise<void> {
  const storeHost = config.stores.shared ? '' : config.host;
  return () => assertStoreMounted(config.stores.originals, () => rowsPastStageOnHost(db, storeHost, 'download'));
}
