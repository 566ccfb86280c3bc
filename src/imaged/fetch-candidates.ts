import { rename, rm } from 'node:fs/promises';
import type { LisConfig } from '../config/config-schema.ts';
import type { OriginalFetcher } from './host-slots.ts';
import type { FetchOutcome } from '../download/fetch-original.ts';
import { storeErrorOf, storeWriteFailure } from '../download/classify-download-error.ts';
import { makeOriginalFolder } from '../download/original-writer.ts';
import { isSourceFault } from '../failure/failure-reasons.ts';
import { tempPathFor } from '../store/atomic-file.ts';

export type StoredOutcome = Exclude<FetchOutcome, { kind: 'stopped' }>;

/**
 * Fetches an original from every candidate URL at once, each into its own
 * temp file beside `destination`, named as the store's temp files are (the
 * writer's pid in it: a SIGKILL's leftovers are a dead writer's partial files
 * to fs_check, removed at once, not real files judged an hour later); the first that arrives whole becomes the
 * original (renamed into place) and the others are cut off and removed.
 * When all fail, the first candidate's failure is the answer (the row's own
 * URL speaks for the row), unless another failed for our own fault: then
 * that is, since the key may be where we could not look (a bucket S3 refused
 * us), and a 404 of the others would fail the row (and lis_imaged delete it)
 * for our config. Limits are the downloader's: maxBytes and the
 * whole-download deadline per fetch. `beforeMakingFolders`: the originals store's guard (originalsStoreGuard);
 * the folder is made under it before any source is asked, so a store whose disk is gone costs no request and is
 * `store_write_failed` (ours), as in lis_downloadd.
 */
export async function fetchFromCandidates(
  fetcher: OriginalFetcher,
  urls: string[],
  destination: string,
  config: Pick<LisConfig, 'download' | 'thumbnail'>,
  beforeMakingFolders?: () => Promise<void>,
): Promise<StoredOutcome> {
  try {
    await makeOriginalFolder(destination, beforeMakingFolders);
  } catch (error) {
    const store = storeErrorOf(error);
    if (!store) throw error;
    return { kind: 'failed', failure: storeWriteFailure(store) };
  }
  const stop = new AbortController();
  const parts = urls.map(() => (urls.length === 1 ? destination : tempPathFor(destination)));
  const attempts = urls.map(async (url, i): Promise<FetchOutcome> => {
    const outcome = await fetcher.fetch({
      url,
      destination: parts[i],
      maxBytes: config.download.maxBytes,
      maxPixels: config.thumbnail.maxPixels,
      totalMs: config.download.timeouts.totalSeconds * 1000,
      signal: stop.signal,
      beforeMakingFolders,
    });
    if (outcome.kind === 'stored' || outcome.kind === 'identical') stop.abort();
    return outcome;
  });
  const outcomes = await Promise.all(attempts);
  const winner = outcomes.findIndex((o) => o.kind === 'stored' || o.kind === 'identical');
  if (urls.length > 1) {
    await Promise.all(parts.map((p, i) => (i === winner ? rename(p, destination) : rm(p, { force: true }))));
  }
  if (winner >= 0) return outcomes[winner] as StoredOutcome;
  const first = outcomes[0];
  if (first.kind === 'stopped') return { kind: 'failed', failure: { reason: 'stopped', errorClass: 'internal', retryable: true } };
  const ours = outcomes.find((o) => o.kind === 'failed' && !isSourceFault(o.failure.errorClass));
  return (ours as StoredOutcome | undefined) ?? first;
}
