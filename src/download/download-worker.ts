import { setMaxListeners } from 'node:events';
import { sql } from 'kysely';
import { access } from 'node:fs/promises';
import type { LisConfig } from '../config/config-schema.ts';
import type { ChunkContext, RowResult, StageWorker } from '../daemon/run-daemon.ts';
import { assertStoreMounted } from '../daemon/store-check.ts';
import { STORE_PATH_WORDS, storeWriteFault } from '../daemon/store-write-fault.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage, stackOf } from '../errors.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { rowsPastStageOnHost } from '../queue/queue-figures.ts';
import { DATABASE_NOW, type RowPatch } from '../queue/row-patch.ts';
import { originalPath } from '../store/store-layout.ts';
import { createDownloadClient, type DownloadClient } from './download-client.ts';
import { storeErrorOf, storeWriteFailure, type DownloadFailure } from './classify-download-error.ts';
import { makeOriginalFolder } from './original-writer.ts';
import { SchemeFetcher } from './fetch-by-scheme.ts';
import type { FetchOutcome } from './fetch-original.ts';
import { drainLimiter, HostLimiter } from './host-limiter.ts';
import { HostPauses, type HostPause } from './host-pauses.ts';

/** What the last download left on a row: present on rows being refreshed. */
interface PreviousDownload {
  content_hash: string | null;
  etag: string | null;
  last_modified: string | null;
}

/** A download running longer than this gives its slot to the queue (HostLimiter.demote). */
const SLOW_AFTER_MS = 1000;

/** A row waiting for a download slot, with the chunk it belongs to. */
interface DownloadJob {
  host: string;
  row: ClaimedRow;
  previous: PreviousDownload | undefined;
  ctx: ChunkContext;
  hardStop: AbortSignal;
  settle: () => void;
  skipped: () => void;
}

/**
 * The longest a host is paused for one answer: a Retry-After may say a day (the row that got it waits that long),
 * but one URL's odd 503 must not park a whole feed for a day; if the host still means it, its next answer says so.
 */
const HOST_PAUSE_MAX_SECONDS = 3600;

/** Pure: the wait a failed download's host asked for (a 429 or 5xx with Retry-After), in seconds; null for none. */
export function hostWaitOf(outcome: FetchOutcome): { seconds: number; status: string } | null {
  if (outcome.kind !== 'failed') return null;
  const { errorClass, retryAfterSeconds, reason } = outcome.failure;
  if ((errorClass !== 'http_429' && errorClass !== 'http_5xx') || !retryAfterSeconds) return null;
  return { seconds: Math.min(retryAfterSeconds, HOST_PAUSE_MAX_SECONDS), status: reason };
}

/** The limiter's key: the URL's host name; null for a URL that does not parse (failed at once). */
export function hostKey(url: string): string | null {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Pure: a download's outcome -> the row's result. New or changed bytes go on
 * to thumbnailing; a 304 or the same bytes as before go straight back to live
 * (asked only when the served version was made from the bytes this host holds:
 * servedFromTheseBytes), the thumbnails on the frontends still right. Either way
 * the row's files are in this host's store, so it is named (`store_host`): a
 * refresh cleared it, and a live row of no host was never backfilled, nor
 * claimed by any pusher once fs_check sent it back to push.
 */
export function rowResult(row: Pick<ClaimedRow, 'id' | 'attempts'>, outcome: Exclude<FetchOutcome, { kind: 'stopped' }>, storeHost: string): RowResult {
  if (outcome.kind === 'failed') return { ok: false, failure: { id: row.id, attempts: row.attempts, ...outcome.failure } };
  const set: RowPatch = { store_host: storeHost, downloaded_at: DATABASE_NOW, etag: outcome.etag, last_modified: outcome.lastModified };
  if (outcome.kind === 'not_modified') return { ok: true, row: { id: row.id, set, toStage: 'live' } };
  set.content_hash = outcome.contentHash;
  set.original_bytes = outcome.bytes;
  set.original_format = outcome.format;
  if (outcome.kind === 'identical') return { ok: true, row: { id: row.id, set, toStage: 'live' } };
  return { ok: true, row: { id: row.id, set } };
}

/**
 * The stage worker of lis_downloadd: a chunk's rows are downloaded
 * `download.concurrency` at a time, each host within its own cap and delay,
 * and each row is reported as soon as it is done. On a stop, no new download
 * starts; those in flight get `download.stopGraceSeconds`, then are cut and
 * left unreported (so given back untouched).
 */
export class DownloadWorker implements StageWorker {
  readonly component = 'downloadd';
  readonly scope = 'Download';
  readonly stage = 'download' as const;
  /** One slow URL must not idle the other download slots: the runner claims on while stragglers finish. */
  readonly overlapChunks = true;
  readonly stores: string[];
  private readonly client: DownloadClient;
  private readonly fetcher: SchemeFetcher;
  private readonly limiter: HostLimiter;
  private readonly storeHost: string;
  /**
   * Hosts that asked us to wait (429/503 with Retry-After): their rows not yet started are not sent meanwhile but
   * given back uncharged until then (`host_throttled`). Before, every queued row of the host was sent all the same,
   * each got the 429 and was charged an attempt: a throttling host's rows burned queue.maxAttempts in a few rounds.
   */
  private readonly paused = new HostPauses();

  constructor(
    private readonly config: LisConfig,
    private readonly db: Db,
    private readonly country: string,
    options: { noproxy?: boolean } = {},
  ) {
    const d = config.download;
    this.client = createDownloadClient(d, options);
    this.fetcher = new SchemeFetcher(this.client, config);
    this.limiter = new HostLimiter({ concurrency: d.concurrency, perHost: d.perHostConcurrency, perHostDelayMs: d.perHostDelaySeconds * 1000 });
    this.storeHost = config.stores.shared ? '' : config.host;
    this.stores = [config.stores.originals];
  }

  /**
   * As lis_thumbnaild's: a row's folder is made only in a store that is mounted. The stage checks the store before
   * each claim, but its disk may go after (an umount between two downloads: nothing holds a file open there), and
   * the folders made again put the originals on the host's own disk, in a folder the next check took for the store.
   */
  private readonly beforeMakingFolders = () => assertStoreMounted(this.config.stores.originals, () => rowsPastStageOnHost(this.db, this.storeHost, 'download'));

  get proxied(): boolean {
    return this.client.proxied;
  }

  /**
   * Queues the chunk's rows in the limiter shared by every chunk in flight
   * (so the caps hold across chunks) and returns once each of its rows is
   * done or, after a stop, left unstarted. A job carries its chunk's context,
   * whichever chunk's pump starts it.
   */
  async processChunk(rows: ClaimedRow[], ctx: ChunkContext): Promise<void> {
    const previous = await this.previousDownloads(rows);
    const hardStop = new AbortController();
    // Every download in flight listens to it.
    setMaxListeners(this.config.download.concurrency + 10, hardStop.signal);
    let grace: NodeJS.Timeout | null = null;
    const onStop = () => {
      grace = setTimeout(() => hardStop.abort(), this.config.download.stopGraceSeconds * 1000);
      // Unstarted jobs of stopped chunks leave the queue now (skipping them one by one would wait out each host's delay).
      for (const job of this.limiter.clearQueued<DownloadJob>()) {
        if (job.ctx.signal.aborted) {
          job.skipped();
          job.settle();
        } else this.limiter.add(job.host, job);
      }
    };
    ctx.signal.addEventListener('abort', onStop, { once: true });
    let unstarted = 0;
    // The runner stops a chunk for a stop of the daemon, and for our store failing: the log says which.
    let storeFailed = false;
    const chunkCtx: ChunkContext = {
      ...ctx,
      report: (result) => {
        if (!result.ok && result.failure.errorClass === 'store_write_failed') storeFailed = true;
        ctx.report(result);
      },
    };
    let left = 0;
    let allDone: () => void = () => {};
    const finished = new Promise<void>((resolve) => (allDone = resolve));
    const settle = () => {
      if (--left === 0) allDone();
    };
    try {
      const jobs: DownloadJob[] = [];
      for (const row of rows) {
        const host = hostKey(row.image_url);
        if (host === null) {
          ctx.report({
            ok: false,
            failure: {
              id: row.id,
              attempts: row.attempts,
              reason: `bad URL: ${JSON.stringify(row.image_url.slice(0, 200))} does not parse`,
              errorClass: 'bad_url',
              retryable: false,
            },
          });
        } else {
          const pause = this.paused.of(host);
          if (pause) ctx.report(this.heldBack(row, host, pause));
          else jobs.push({ host, row, previous: previous.get(row.id), ctx: chunkCtx, hardStop: hardStop.signal, settle, skipped: () => unstarted++ });
        }
      }
      left = jobs.length;
      if (left === 0) return;
      for (const job of jobs) this.limiter.add(job.host, job);
      // A pump per chunk: it also starts jobs queued by other chunks, so a new chunk's rows start at once.
      void drainLimiter<DownloadJob>(this.limiter, (job, demote) => this.runJob(job, demote), new AbortController().signal);
      await finished;
      if (unstarted)
        ctx.log.info(
          storeFailed
            ? `Not starting ${unstarted} downloads of this chunk: the originals store cannot be written (store_write_failed); given back uncharged`
            : `Stopping: ${unstarted} downloads not started`,
          { scope: 'Download::process_chunk' },
        );
    } finally {
      ctx.signal.removeEventListener('abort', onStop);
      if (grace) clearTimeout(grace);
    }
  }

  private async runJob(job: DownloadJob, demote: () => void): Promise<void> {
    // A download still running after this long hands its slot to the next row (a drip-feed server).
    const slow = setTimeout(demote, SLOW_AFTER_MS);
    try {
      if (job.ctx.signal.aborted) job.skipped();
      else {
        const wait = await this.downloadRow(job.row, job.previous, job.ctx, job.hardStop);
        if (wait) this.pauseHost(job.host, wait);
      }
    } finally {
      clearTimeout(slow);
      job.settle();
    }
  }

  /** The host asked us to wait: its queued rows (of every chunk) go back uncharged until then, as do those claimed meanwhile. */
  private pauseHost(host: string, wait: { seconds: number; status: string }): void {
    // On the monotonic clock: the wall clock stepped forward ended the pause at once (each row asked was charged a
    // 429), stepped back it stretched the pause by the step.
    const pause = this.paused.pause(host, performance.now() + wait.seconds * 1000, wait.status);
    for (const job of this.limiter.takeQueuedOf<DownloadJob>(host)) {
      job.ctx.report(this.heldBack(job.row, host, pause));
      job.settle();
    }
  }

  /** A row of a paused host, not tried: given back uncharged until the host's wait is over. */
  private heldBack(row: ClaimedRow, host: string, pause: HostPause): RowResult {
    const leftMs = pause.until - performance.now();
    const at = new Date(Date.now() + leftMs).toISOString().replace(/\.\d+Z$/, 'Z');
    return {
      ok: false,
      failure: {
        id: row.id,
        attempts: row.attempts,
        reason: `not tried: ${host} asked us to wait until ${at} (${pause.status} with Retry-After on another of its URLs)`,
        errorClass: 'host_throttled',
        retryable: true,
        retryAfterSeconds: Math.max(1, Math.ceil(leftMs / 1000)),
      },
    };
  }

  close(): void {
    this.client.destroy();
    this.fetcher.destroy();
  }

  /**
   * Never throws: whatever goes wrong becomes the row's failure (`internal`, retryable, when unforeseen). Returns the
   * wait its host asked for, if it did (hostWaitOf).
   */
  private async downloadRow(
    row: ClaimedRow,
    previous: PreviousDownload | undefined,
    ctx: ChunkContext,
    hardStop: AbortSignal,
  ): Promise<{ seconds: number; status: string } | null> {
    try {
      const destination = originalPath(this.config, this.country, row.image_hash);
      await makeOriginalFolder(destination, this.beforeMakingFolders);
      // Conditional requests and the same-bytes shortcut only when this host holds the last original
      // (and so its thumbnails); otherwise the row needs a full download and new thumbnails here.
      const haveOriginal = previous?.content_hash
        ? await access(destination).then(
            () => true,
            () => false,
          )
        : false;
      const started = performance.now();
      const outcome = await this.fetcher.fetch({
        url: row.image_url,
        destination,
        conditional: haveOriginal ? { etag: previous!.etag, lastModified: previous!.last_modified } : undefined,
        previousHash: haveOriginal ? previous!.content_hash : null,
        maxBytes: this.config.download.maxBytes,
        maxPixels: this.config.thumbnail.maxPixels,
        totalMs: this.config.download.timeouts.totalSeconds * 1000,
        signal: hardStop,
        beforeMakingFolders: this.beforeMakingFolders,
      });
      if (outcome.kind === 'stopped') return null;
      const ms = Math.round(performance.now() - started);
      if (outcome.kind === 'failed')
        ctx.log.debug(`${row.image_url}: ${outcome.failure.errorClass}: ${outcome.failure.reason} (${ms} ms)`, { scope: 'Download::fetch' });
      else
        ctx.log.debug(
          `${row.image_url}: ${outcome.kind}${'bytes' in outcome ? ` ${outcome.bytes} bytes ${outcome.format}` : ''}${'unverified' in outcome && outcome.unverified ? ` (${outcome.unverified}: the thumbnailer judges it)` : ''} (${ms} ms)`,
          {
            scope: 'Download::fetch',
          },
        );
      const result = rowResult(row, outcome, this.storeHost);
      ctx.report(result.ok || result.failure.errorClass !== 'store_write_failed' ? result : { ok: false, failure: await this.storeFault(result.failure) });
      return hostWaitOf(outcome);
    } catch (error) {
      const store = storeErrorOf(error);
      if (store) {
        ctx.report({ ok: false, failure: await this.storeFault({ id: row.id, attempts: row.attempts, ...storeWriteFailure(store) }) });
        return null;
      }
      ctx.log.error(`${row.image_url}: unexpected: ${errorMessage(error)}`, { scope: 'Download::fetch', ...stackOf(error) });
      ctx.report({
        ok: false,
        failure: { id: row.id, attempts: row.attempts, reason: `internal: ${errorMessage(error)}`, errorClass: 'internal', retryable: true },
      });
      return null;
    }
  }

  /**
   * A store_write_failed as the store's (it pauses the stage, every chunk's rows given back) or, when the store
   * itself can be written, as this row's folder or file (store_path_failed: the row waits, the rest go on).
   */
  private async storeFault<F extends DownloadFailure>(failure: F): Promise<F> {
    const { originals, minFreeBytes, minFreePercent } = this.config.stores;
    const fault = await storeWriteFault(originals, { minFreeBytes, minFreePercent }, failure.storeCode);
    return fault === 'store_write_failed' ? failure : { ...failure, errorClass: fault, reason: `${failure.reason} (${STORE_PATH_WORDS})` };
  }

  /**
   * The validators and hash of rows whose served version was made from the bytes last downloaded (a refresh of a
   * live row); one query per chunk. Only those may take the 304 / same-bytes shortcut back to live: a row sent back
   * to download before it was ever live, or while a newer download or a rework of it was not yet served, has no
   * thumbnails of these bytes on the frontends. Asked conditionally, such a row went "live" with nothing served, or
   * with the last version's pictures for new bytes, for good.
   */
  private async previousDownloads(rows: ClaimedRow[]): Promise<Map<string, PreviousDownload>> {
    const found = await this.db
      .selectFrom('live_images')
      .select(['id', 'content_hash', 'etag', 'last_modified'])
      .where(
        'id',
        'in',
        rows.map((r) => r.id),
      )
      .where('content_hash', 'is not', null)
      .where(sql<boolean>`live_data IS NOT NULL AND image_data = live_data AND live_data->>'contentHash' = content_hash`)
      .execute();
    return new Map(found.map((r) => [r.id, r]));
  }
}
