import { checkStore, STORE_UNMARKED, type StoreLimits } from './store-check.ts';

/**
 * A file system's own state: the whole store's, whatever a check finds a moment later (a file deleted meanwhile);
 * and a store found to be the empty folder of a disk not mounted (assertStoreMounted).
 */
const STORE_WIDE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EROFS', 'EDQUOT', STORE_UNMARKED]);

/** store_write_failed pauses the stage until its store can be written; store_path_failed waits one row. */
export type StoreWriteFault = 'store_write_failed' | 'store_path_failed';

/**
 * Whose is a failed write into a store: the store's (full, read-only, not mounted: `store_write_failed`, which
 * pauses the stage and gives the row back to be claimed again at once, right since the pause holds every claim
 * until the store is fixed) or one row's path inside it (a folder of the wrong owner or mode, a file where a
 * folder should be, an I/O error in one folder: `store_path_failed`). The second passes the store's check, so as
 * `store_write_failed` the stage resumed at once, claimed the row at once and failed it again: a hot loop that
 * kept a run by hand from ever ending, and for lis_downloadd asked the source for the same URL again and again.
 * As `store_path_failed` the row waits queue.oursRetrySeconds, uncharged, while the stage goes on.
 */
export async function storeWriteFault(dir: string, limits: StoreLimits, code: unknown): Promise<StoreWriteFault> {
  if (STORE_WIDE_CODES.has(String(code))) return 'store_write_failed';
  return (await checkStore(dir, limits)).ok ? 'store_path_failed' : 'store_write_failed';
}

/** The words added to a store_path_failed row's reason. */
export const STORE_PATH_WORDS = "the store itself can be written: the fault is in this row's folder or file";
