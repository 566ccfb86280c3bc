import { open, readFile } from 'node:fs/promises';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import type { ImageData } from '../store/image-data.ts';
import { writeFileAtomic } from '../store/atomic-file.ts';
import { originalPath, thumbnailRelativePath, thumbnailStorePath } from '../store/store-layout.ts';
import { ImageError } from '../thumbnail/image-error.ts';
import { makePresets } from '../thumbnail/make-presets.ts';
import type { Thumbnails } from '../thumbnail/make-thumbnails.ts';
import { processDetails, type ResolvedDetails } from '../thumbnail/process-details.ts';
import { LisError, UsageError, errorMessage } from '../errors.ts';
import { isSourceFault } from '../failure/failure-reasons.ts';
import { addPreset } from '../queue/add-preset.ts';
import { rowsPastStageOnHost } from '../queue/queue-figures.ts';
import { assertStoreMounted } from '../daemon/store-check.ts';
import { candidateUrls } from './origin-urls.ts';
import { fetchFromCandidates } from './fetch-candidates.ts';
import { originalsStoreGuard } from './originals-store-guard.ts';
import type { OriginalFetcher } from './host-slots.ts';

export interface RowForPreset {
  id: string;
  country: string;
  image_hash: string;
  image_url: string;
  datasource_id: number;
  /** image_data.original: what lis_thumbnaild read of the original's header (null before thumbnailing). */
  original: Thumbnails['original'] | null;
}

/**
 * Why a thumbnail cannot be made now; `status` is what the request gets. `code`: ERR_IMAGED_NOT_MADE, or
 * ERR_IMAGED_NO_TWIN for a WebP/AVIF twin that is not made (switched off in thumbnail.twins, or missing) of
 * an image whose JPEG there is: a 404 sent without the placeholder.
 */
export class NotMadeError extends LisError {
  constructor(
    readonly status: 404 | 502 | 503,
    message: string,
    code: 'ERR_IMAGED_NOT_MADE' | 'ERR_IMAGED_NO_TWIN' = 'ERR_IMAGED_NOT_MADE',
    /**
     * For a 503: when to come back, if the cause says (a row's retry time); else imaged.retryAfterSeconds.
     * `ours`: our own fault (a store, the database), logged as an error for operators; the row is not charged.
     */
    readonly options: { retryAfterSeconds?: number; ours?: boolean } = {},
  ) {
    super(code, message);
    this.name = 'NotMadeError';
  }
}

/**
 * One preset of a row already past thumbnailing (a new preset, changed
 * details, a lost file): cut by the thumbnailer's own code from the original
 * in the store, fetched again first (with the downloader's fetch and limits)
 * when the original is gone. The files go to the thumbnail store and the row's
 * image_data gains the preset, so the pusher's backfill sends them to every
 * frontend. Returns the files made (the JPEG, then any twins).
 * `record` is where the preset is recorded: the caller's transaction (the one
 * holding the image's lock), so the record shares its commit instead of
 * costing a round trip and a WAL flush of its own; null: not recorded (a row
 * whose files are on another host: see ThumbnailService.generate).
 */
export async function makePresetOfRow(
  db: Db,
  config: LisConfig,
  fetcher: OriginalFetcher,
  row: RowForPreset,
  preset: string,
  version = 1,
  record: Db | null = db,
): Promise<Array<{ ext: string; data: Buffer }>> {
  const file = originalPath(config, row.country, row.image_hash);
  let original = await readOriginal(file, row.original?.bytes);
  if (!original) {
    const outcome = await fetchFromCandidates(fetcher, candidateUrls(row.image_url, config.imaged.origins), file, config, originalsStoreGuard(db, config));
    if (outcome.kind === 'failed') {
      const { errorClass, reason } = outcome.failure;
      // Fetched, but our store could not keep it (full, read-only): ours, not the source's 502.
      if (!isSourceFault(errorClass)) throw oursError(`the original is not in the store and could not be stored again: ${errorClass}: ${reason}`);
      throw new NotMadeError(502, `the original is not in the store and could not be fetched again: ${errorClass}: ${reason}`);
    }
    original = await readOriginal(file, undefined);
    if (!original) throw oursError('the original fetched again is not in the store (removed meanwhile?)');
  }
  let details: ResolvedDetails;
  try {
    details = await detailsOf(db, config, row);
  } catch (error) {
    // A bad value written straight into the table (the thumbnailer fails such rows as bad_process_details):
    // ours to fix, not the client's and not a bug, so a 503 that says what, rather than a 500.
    if (error instanceof UsageError)
      throw new NotMadeError(
        503,
        `datasource ${row.datasource_id} of ${row.country}: its process details are invalid (${error.message}); fix them with lis datasource`,
      );
    throw error;
  }
  let made;
  try {
    // Only this preset: the decode shrinks on load to its size alone, the cheapest a miss can be; and no
    // hash or analysis, which the row (past thumbnailing) already has in its image_data.
    made = await makePresets(
      original,
      { ...config.thumbnail, presets: { [preset]: config.thumbnail.presets[preset] }, details },
      { known: row.original ?? undefined },
    );
  } catch (error) {
    if (error instanceof ImageError) throw new NotMadeError(404, `the original cannot be thumbnailed: ${error.code}: ${error.message}`);
    throw error;
  }
  const output = made.presets[preset];
  const relative = (ext: string) => thumbnailRelativePath(row.country, row.image_hash, preset, ext, version);
  // As lis_thumbnaild does: a row's folder is made only in a store that is mounted. Made in the empty folder of a
  // disk not mounted, the file went to the host's own disk, and lis_thumbnaild's next check took it for the store.
  const rowsPastThumbnailing = () => rowsPastStageOnHost(db, config.stores.shared ? '' : config.host, 'thumbnail');
  const writeOptions = { beforeMakingFolders: () => assertStoreMounted(config.stores.thumbnails, rowsPastThumbnailing) };
  await Promise.all(output.files.map((f) => writeFileAtomic(thumbnailStorePath(config, relative(f.ext)), f.data, writeOptions))).catch((error: unknown) => {
    // A store full or read-only is ours to fix, not a bug (500): 503, nothing recorded (writeFileAtomic leaves no temp).
    throw oursError(`store_write_failed: cannot write thumbnails: ${errorMessage(error)}`);
  });
  const [jpeg, ...twins] = output.files;
  const entry: ImageData['presets'][string] = {
    width: output.width,
    height: output.height,
    bytes: jpeg.data.length,
    path: relative(jpeg.ext),
    ...(twins.length ? { twins: Object.fromEntries(twins.map((t) => [t.ext, { path: relative(t.ext), bytes: t.data.length }])) } : {}),
  };
  if (record) await addPreset(record, row.id, preset, entry, version);
  return output.files;
}

/** A 503 for a fault of ours (a store): logged as an error, charged to nobody. */
function oursError(message: string): NotMadeError {
  return new NotMadeError(503, `${message} (our fault, not the image's; try again shortly)`, 'ERR_IMAGED_NOT_MADE', { ours: true });
}

/**
 * The original in the store, or null when it is not there (ENOENT: lost, or never kept here). Any other error
 * (permissions, EIO, a folder in its place) is our store's fault: 503 store_read_failed, not a reason to fetch the
 * original again from the source and answer for the source's reply.
 */
async function readOriginal(file: string, knownBytes: number | undefined): Promise<Buffer | null> {
  try {
    return knownBytes ? await readOfSize(file, knownBytes) : await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw oursError(`store_read_failed: cannot read the original: ${errorMessage(error)}`);
  }
}

/**
 * The file, read in one call when it has the size image_data recorded: readFile asks for the size first (fstat),
 * a turn on libuv's pool more, which the decodes share. One byte more is asked for, so that a longer file (the
 * original replaced since) is seen and read whole.
 */
async function readOfSize(file: string, bytes: number): Promise<Buffer> {
  const handle = await open(file);
  try {
    const buffer = Buffer.allocUnsafe(bytes + 1);
    const { bytesRead } = await handle.read(buffer, 0, bytes + 1, 0);
    return bytesRead === bytes ? buffer.subarray(0, bytes) : await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Process details per datasource, read at most every DETAILS_MS: a miss should not cost a round trip for them. */
const DETAILS_MS = 10_000;
const detailsCaches = new WeakMap<Db, Map<string, { at: number; details: Promise<ResolvedDetails> }>>();

function detailsOf(db: Db, config: LisConfig, row: RowForPreset): Promise<ResolvedDetails> {
  let detailsCache = detailsCaches.get(db);
  if (!detailsCache) detailsCaches.set(db, (detailsCache = new Map<string, { at: number; details: Promise<ResolvedDetails> }>()));
  const key = `${row.country}:${row.datasource_id}`;
  const found = detailsCache.get(key);
  if (found && performance.now() - found.at < DETAILS_MS) return found.details;
  const details = processDetails(db, row.country, row.datasource_id, config.thumbnail.defaults);
  void details.catch(() => detailsCache.delete(key));
  detailsCache.set(key, { at: performance.now(), details });
  return details;
}
