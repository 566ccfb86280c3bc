import crypto from 'node:crypto';
import { readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { assertStoreMounted, checkReadable } from '../daemon/store-check.ts';
import { STORE_PATH_WORDS, storeWriteFault } from '../daemon/store-write-fault.ts';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { UsageError, errorMessage, stackOf } from '../errors.ts';
import { isSourceFault } from '../failure/failure-reasons.ts';
import type { ChunkContext, RowResult, StageWorker } from '../daemon/run-daemon.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { rowsPastStageOnHost } from '../queue/queue-figures.ts';
import { writeFileAtomic } from '../store/atomic-file.ts';
import { nextThumbnailVersion, originalPath, thumbnailRelativePath, thumbnailStorePath } from '../store/store-layout.ts';
import { classifyImage, sameHashCountMatters } from './classify-image.ts';
import { countSameHash, markEarlierDuplicates, type DuplicateKey } from './duplicate-count.ts';
import { ImageError } from './image-error.ts';
import { imageDataOf } from './image-data-of.ts';
import { makeThumbnails, type Thumbnails } from './make-thumbnails.ts';
import { PixelBudget } from './pixel-budget.ts';
import { processDetails, type ResolvedDetails } from './process-details.ts';
import { applySharpSettings, parallelismFor } from './sharp-settings.ts';

export interface ThumbnailWorkerOptions {
  config: LisConfig;
  db: Db;
}

/** The thumbnail stage: each claimed row's original in, its presets out, the row on to `push`. */
export function createThumbnailWorker({ config, db }: ThumbnailWorkerOptions): StageWorker {
  const settings = config.thumbnail;
  const parallelism = parallelismFor(settings);
  applySharpSettings(parallelism);
  // Memory is bounded by the pixels decoded at once, whatever their count (imagesInFlight bounds the count).
  const pixelBudget = new PixelBudget(settings.pixelBudget);
  const admitPixels = (pixels: number) => pixelBudget.acquire(pixels);

  // Pictures found duplicates: their earlier rows are re-classed once this chunk's results are written
  // (at the next chunk, or at close), so that rows classed `photo` earlier in the same chunk are caught too.
  const newDuplicates = new Map<string, DuplicateKey>();
  const markNewDuplicates = async (log: { warn(message: string, meta: object): unknown }) => {
    for (const [key, query] of newDuplicates) {
      try {
        await markEarlierDuplicates(db, query);
        newDuplicates.delete(key);
      } catch (error) {
        log.warn(`Cannot re-class earlier duplicates of ${key}: ${errorMessage(error)}; trying again later`, { scope: 'Thumbnail::classify' });
      }
    }
  };
  let lastLog: ChunkContext['log'] | null = null;
  // Whether the thumbnail store should hold files: rows of this host (or of the shared stores) past this stage.
  const rowsPastThumbnailing = () => rowsPastStageOnHost(db, config.stores.shared ? '' : config.host, 'thumbnail');

  return {
    component: 'thumbnaild',
    scope: 'Thumbnail',
    stage: 'thumbnail',
    // A full or read-only thumbnail store pauses the stage instead of charging rows; so does an originals store
    // with no folder for the country (not mounted), instead of sending every row back to download.
    stores: [config.stores.thumbnails],
    readStores: [config.stores.originals],
    async close() {
      if (lastLog) await markNewDuplicates(lastLog);
    },
    async processChunk(rows, ctx) {
      lastLog = ctx.log;
      await markNewDuplicates(ctx.log);
      const chunk = new ChunkState(rows.map((r) => r.id));
      let next = 0;
      // A fixed pool of lanes, each taking the next row: at most imagesInFlight images decoded at once.
      const lane = async () => {
        while (next < rows.length && !ctx.signal.aborted) {
          const row = rows[next++];
          ctx.report(await thumbnailRow(row, chunk, ctx));
        }
      };
      await Promise.all(Array.from({ length: Math.min(parallelism.imagesInFlight, rows.length) }, lane));
    },
  };

  /**
   * One row, start to finish. A fault of ours (the database failing us, a bug, memory or threads short) is a
   * result of ours: the row waits queue.oursRetrySeconds uncharged. Left unreported it was given back at once,
   * and claimed and failed again at once: a hot loop on that row, and a run by hand that never ended.
   */
  async function thumbnailRow(row: ClaimedRow, chunk: ChunkState, ctx: ChunkContext): Promise<RowResult> {
    const fail = (error: ImageError): RowResult => {
      ctx.log.debug(`${row.image_hash}: ${error.code}: ${error.message}`, { scope: 'Thumbnail::process' });
      return { ok: false, failure: { id: row.id, attempts: row.attempts, reason: error.message, errorClass: error.code, retryable: error.retryable } };
    };
    const ours = (errorClass: 'database' | 'internal', reason: string): RowResult => ({
      ok: false,
      failure: { id: row.id, attempts: row.attempts, reason, errorClass, retryable: true },
    });
    let details: ResolvedDetails;
    try {
      details = await chunk.detailsFor(row.datasource_id, () => processDetails(db, row.country, row.datasource_id, settings.defaults));
    } catch (error) {
      // A bad value written straight into the table: ours, the row waits and is tried again until it is set right.
      if (error instanceof UsageError) return fail(new ImageError('bad_process_details', `datasource ${row.datasource_id}: ${error.message}`));
      const reason = `datasource ${row.datasource_id}: cannot read its process details: ${errorMessage(error)}`;
      ctx.log.error(reason, { scope: 'Thumbnail::process' });
      return ours('database', reason);
    }

    let original: Buffer;
    try {
      original = await readFile(originalPath(config, row.country, row.image_hash));
    } catch (error) {
      return fail(await originalReadFailure(config.stores.originals, row.country, error));
    }
    if (original.length === 0) return fail(await emptyOriginal(originalPath(config, row.country, row.image_hash)));

    let made: Thumbnails;
    try {
      made = await makeThumbnails(original, { ...settings, details }, admitPixels);
    } catch (error) {
      if (error instanceof ImageError && isSourceFault(error.code)) {
        // The source is blamed only for the bytes it sent: a file our store cut (a crash, a copy) is ours.
        let damaged: ImageError | null;
        try {
          damaged = await damagedOriginal(db, row.id, originalPath(config, row.country, row.image_hash), original);
        } catch (dbError) {
          return ours('database', `cannot tell whether the original was damaged in the store: ${errorMessage(dbError)}`);
        }
        return fail(damaged ? new ImageError(damaged.code, `${damaged.message}; the decoder: ${error.message}`) : error);
      }
      if (error instanceof ImageError) return fail(error);
      // Not the image's fault (out of memory, threads, a bug): ours, and a later run tries it.
      ctx.log.error(`${row.image_hash}: ${errorMessage(error)}`, { scope: 'Thumbnail::process', ...stackOf(error) });
      return ours('internal', `not the image: ${errorMessage(error)}`);
    }

    // A new version gets new names: the files the frontends serve stay untouched until it is live everywhere.
    const version = nextThumbnailVersion(row.image_data);
    const relative = (preset: string, ext: string) => thumbnailRelativePath(row.country, row.image_hash, preset, ext, version);
    // A row's folder is made only in a store that is mounted: one whose disk went since the check would be made on the host's disk.
    const writeOptions = { beforeMakingFolders: () => assertStoreMounted(config.stores.thumbnails, rowsPastThumbnailing) };
    try {
      await Promise.all(
        Object.entries(made.presets).flatMap(([name, output]) =>
          output.files.map((file) => writeFileAtomic(thumbnailStorePath(config, relative(name, file.ext)), file.data, writeOptions)),
        ),
      );
    } catch (error) {
      return fail(await thumbnailWriteFailure(config, error));
    }

    let imageClass: string | undefined;
    if (!row.human_classified) {
      try {
        imageClass = await classOf(row, made, chunk);
      } catch (error) {
        ctx.log.error(`${row.image_hash}: cannot classify: ${errorMessage(error)}`, { scope: 'Thumbnail::classify' });
        return ours('database', `cannot classify: ${errorMessage(error)}`);
      }
    }
    return {
      ok: true,
      row: {
        id: row.id,
        set: {
          image_data: imageDataOf(made, relative, version, details) as unknown as Record<string, unknown>,
          perceptual_hash: made.perceptualHash,
          ...(imageClass ? { image_class: imageClass } : {}),
        },
      },
    };
  }

  async function classOf(row: ClaimedRow, made: Thumbnails, chunk: ChunkState): Promise<string> {
    const rules = settings.classes;
    const key = `${row.country}:${row.datasource_id}:${made.perceptualHash}`;
    const inChunk = chunk.sawHash(key);
    const query = { country: row.country, datasourceId: row.datasource_id, perceptualHash: made.perceptualHash, excludeIds: chunk.ids };
    const facts = { original: made.original, maxStdev: made.maxStdev, entropy: made.entropy };
    const recorded = sameHashCountMatters(facts, inChunk, rules) ? await countSameHash(db, { ...query, limit: rules.duplicateMinListings }) : 0;
    const imageClass = classifyImage({ ...facts, sameHashListings: recorded + inChunk }, rules);
    if (imageClass === 'duplicate') newDuplicates.set(key, { country: row.country, datasourceId: row.datasource_id, perceptualHash: made.perceptualHash });
    return imageClass;
  }
}

/** What the rows of one chunk share: their ids, process details per datasource, perceptual hashes seen. */
class ChunkState {
  private readonly details = new Map<number, Promise<ResolvedDetails>>();
  private readonly hashes = new Map<string, number>();
  constructor(readonly ids: string[]) {}

  detailsFor(datasourceId: number, load: () => Promise<ResolvedDetails>): Promise<ResolvedDetails> {
    let found = this.details.get(datasourceId);
    if (!found) {
      found = load();
      found.catch(() => this.details.delete(datasourceId));
      this.details.set(datasourceId, found);
    }
    return found;
  }

  /** Counts this row in; returns how many rows of the chunk (this one included) had the picture. */
  sawHash(key: string): number {
    const n = (this.hashes.get(key) ?? 0) + 1;
    this.hashes.set(key, n);
    return n;
  }
}

/**
 * Why a row's thumbnails could not be written, and so what becomes of its row: the store's fault pauses the
 * stage, a fault in the row's own folder or file waits that row (storeWriteFault).
 */
export async function thumbnailWriteFailure(config: Pick<LisConfig, 'stores'>, error: unknown): Promise<ImageError> {
  const reason = `cannot write thumbnails: ${errorMessage(error)}`;
  const { thumbnails, minFreeBytes, minFreePercent } = config.stores;
  const fault = await storeWriteFault(thumbnails, { minFreeBytes, minFreePercent }, (error as { code?: unknown } | null)?.code);
  return fault === 'store_write_failed' ? new ImageError(fault, reason) : new ImageError(fault, `${reason} (${STORE_PATH_WORDS})`);
}

/**
 * An original of 0 bytes. lis_downloadd stores no empty body (it is not_image there), so it was damaged in our
 * store (a crash, a copy or restore cut short), not sent so. Blamed on the image it failed the row for good,
 * corrupt_image charged to its datasource. It is lost: original_missing, and the manager sends the row back to
 * download. The empty file goes first: left there, the download took it for the original it holds and asked
 * the source with the last ETag, and a 304 sent the row to live with no thumbnails.
 */
export async function emptyOriginal(file: string): Promise<ImageError> {
  const removed = await unlink(file).then(
    () => 'removed',
    (error: unknown) => `not removed: ${errorMessage(error)}`,
  );
  return new ImageError('original_missing', `the original in the store is empty (0 bytes): damaged in the store, not sent so (${removed})`);
}

/**
 * An original the decoder refused, judged against what lis_downloadd recorded when it stored it (its bytes and
 * SHA-256): when they differ, the file was damaged in our store (a crash, a copy or restore cut short), not sent
 * so, and the row is ours, `original_missing`: lis_managerd sends it back to download. Blamed on the image, it was
 * failed for good as corrupt_image and charged to its datasource. The damaged file goes first, as an empty one
 * does (emptyOriginal). Null when the bytes are those downloaded (or nothing was recorded): the source's verdict stands.
 */
export async function damagedOriginal(db: Db, id: string, file: string, original: Buffer): Promise<ImageError | null> {
  const recorded = await db.selectFrom('live_images').select(['original_bytes', 'content_hash']).where('id', '=', id).executeTakeFirst();
  let what: string;
  if (recorded?.original_bytes != null && recorded.original_bytes !== original.length)
    what = `the original in the store is ${original.length} bytes where ${recorded.original_bytes} were downloaded`;
  else if (recorded?.content_hash && recorded.content_hash !== crypto.createHash('sha256').update(original).digest('hex'))
    what = `the original in the store is not the one downloaded (its SHA-256 differs)`;
  else return null;
  const removed = await unlink(file).then(
    () => 'removed',
    (error: unknown) => `not removed: ${errorMessage(error)}`,
  );
  return new ImageError('original_missing', `${what}: damaged in the store, not sent so (${removed})`);
}

/**
 * Why an original could not be read, and so what becomes of its row:
 * - not there, in a store that has the country's folder: `original_missing` (lis_managerd sends it back to download);
 * - not there because the store has no folder for the country at all (not mounted, emptied): `store_paused`, a
 *   store fault that pauses the stage, rather than sending every row of the country back to its source;
 * - there but unreadable (permissions, an I/O error, too many open files): `store_read_failed`, given back
 *   uncharged and tried again later; the original is not lost, so it is not fetched again.
 */
export async function originalReadFailure(originals: string, country: string, error: unknown): Promise<ImageError> {
  const code = (error as { code?: unknown }).code;
  if (code !== 'ENOENT' && code !== 'ENOTDIR') return new ImageError('store_read_failed', `cannot read the original: ${errorMessage(error)}`);
  const unreadable = await checkReadable(path.join(originals, country));
  if (unreadable) return new ImageError('store_paused', `the originals store is not usable: ${unreadable}`);
  return new ImageError('original_missing', `original not readable: ${errorMessage(error)}`);
}
