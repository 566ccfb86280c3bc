import { open, stat } from 'node:fs/promises';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { deleteMissedOriginRow, insertOriginRow } from '../queue/origin-rows.ts';
import { thumbnailRelativePath, thumbnailStorePath } from '../store/store-layout.ts';
import { GenerationGate, RequestGoneError } from './generation-gate.ts';
import { lockImageRow, readRow, type RowState } from './image-row.ts';
import type { Picture } from './http-answer.ts';
import { makePresetOfRow, NotMadeError } from './make-preset.ts';
import { originImageUrl } from './origin-urls.ts';
import { runRowStages, type StageRunner } from './run-row-stages.ts';
import { UnreleasedRows } from './unreleased-rows.ts';
import { HeldRows } from './held-rows.ts';
import { HostSlots } from './host-slots.ts';
import { lis_hash_for_url } from '../hash/image-hash.ts';
import { isSourceFault } from '../failure/failure-reasons.ts';
import { codePointLength } from '../util/code-points.ts';

/** A thumbnail answered, and where it came from: `store` (already there) or `made` (by this request's generation). */
export interface Answer {
  picture: Picture;
  source: 'store' | 'made' | 'waited';
}

/** What a thumbnail path names. */
export interface ThumbnailName {
  country: string;
  hash: string;
  preset: string;
  ext: string;
  /** 1: today's names `<hash>_<preset>.<ext>`; more: `<hash>_<preset>.v<N>.<ext>` (a rework's). */
  version: number;
}

/**
 * The signal a generation runs under: a request's own (`signal` of thumbnail() and originThumbnail(), aborted when
 * its client hangs up) only ends that request's wait in the gate. A generation that has started is shared by every
 * request of its key and is finished whatever they do: stopped half-way, it would leave its row given back and its
 * work thrown away, to be done again by the next request. (Once none is left, it leaves undone only what it has not
 * begun: a fetch waiting for its host's turn, a wait for a daemon; see generate's `unwanted`.)
 */
const UNSTOPPED = new AbortController().signal;

/**
 * Whether a file of `name` in the store may be served as it is: not for a row past thumbnailing that has no record
 * of it, the leftover of a generation killed (or whose database went away) between the file and its record. Served
 * as it is, that file was never pushed (the pusher sends what image_data lists), so every request for it came back
 * here for good; instead the generation runs, writes the same bytes and records them. A request reaches lis_imaged
 * only when its frontend lacks the file, so the row read is not on the hot path (nginx is). Pure.
 */
function servableAsStored(row: RowState | null, name: ThumbnailName): boolean {
  if (!row || (row.stage !== 'push' && row.stage !== 'live')) return true;
  if (name.version !== row.version && name.version !== row.live_version) return true;
  return row.recorded;
}

/** One generation per thumbnail name in this process: what the gate's single flight is keyed by. */
const gateKey = (name: ThumbnailName) => `${name.country}/${name.hash}/${name.preset}/${name.version}`;

/**
 * What lis_imaged does for one thumbnail: the store's file when there;
 * otherwise one generation per image (in this process: single flight under a
 * bound; across processes: a PostgreSQL advisory lock per image, taken before
 * anything is made and re-checked after), which makes the preset of a row
 * past thumbnailing or works a queued row's stages now.
 */
export class ThumbnailService {
  readonly gate: GenerationGate<Answer>;
  /** Generations this process ran (tests and metrics). */
  generations = 0;
  /** Rows claimed for a request that the database did not let us give back yet. */
  readonly unreleased: UnreleasedRows;
  /** Rows claimed for a request and in hand; after a lost connection, the others the database says we hold go back. */
  readonly held: HeldRows;

  /** Every fetch of an original, within the downloader's per-host limits. */
  readonly hostSlots: HostSlots;
  private readonly runner: StageRunner;

  constructor(runner: StageRunner) {
    const { imaged } = runner.config;
    this.hostSlots = new HostSlots(runner.fetcher, runner.config.download);
    this.runner = { ...runner, fetcher: this.hostSlots };
    this.gate = new GenerationGate(imaged.maxGenerations, imaged.maxWaiting);
    this.unreleased = new UnreleasedRows(runner.db, runner.workerId, runner.log);
    this.held = new HeldRows(runner.db, runner.workerId, runner.log);
  }

  /** At a stop, before the database closes: a last try at rows owed back. */
  async close(): Promise<void> {
    this.held.stop();
    await this.unreleased.close();
  }

  private get db(): Db {
    return this.runner.db;
  }

  /**
   * The thumbnail `<country>/<aa>/<bb>/<hash>_<preset>[.v<N>].<ext>`; NotMadeError when there is none to give.
   * `signal`: the request's; when it aborts, RequestGoneError, and the request's place in the gate is freed.
   */
  async thumbnail(name: ThumbnailName, signal: AbortSignal): Promise<Answer> {
    // The row first: it says whether a file in the store may be served as it is, so the usual miss (a row past
    // thumbnailing with no record of the preset) skips the store's lookup, a failed open on libuv's pool that
    // the decodes share. No such image: 404 at once, outside the gate (below); paths of images that do not exist
    // (random hashes, a crawler's guesses) would each take a generation slot and a locks-pool transaction to
    // learn it, and push real misses into 503. generate reads the row again under the image's lock.
    let row: RowState | null;
    try {
      row = await readRow(this.db, name.country, name.hash, { preset: name.preset, version: name.version });
    } catch (error) {
      // The database away: a file in the store is served all the same (its record can wait; the picture is there).
      const stored = await this.fromStore(name, name.ext);
      if (stored) return { picture: stored, source: 'store' };
      throw error;
    }
    if (servableAsStored(row, name)) {
      const stored = await this.fromStore(name, name.ext);
      if (stored) return { picture: stored, source: 'store' };
    }
    if (name.ext !== 'jpg' && !this.runner.config.thumbnail.twins[name.ext as 'webp' | 'avif'])
      throw new NotMadeError(404, `.${name.ext} twins are switched off (thumbnail.twins)`, 'ERR_IMAGED_NO_TWIN');
    if (!row) throw new NotMadeError(404, 'no such image');
    const answer = await this.gate.run(gateKey(name), (unwanted) => this.generate(name, UNSTOPPED, unwanted), signal);
    if (answer.picture.ext === name.ext) return answer;
    const twin = await this.fromStore(name, name.ext);
    if (!twin) throw new NotMadeError(404, `no .${name.ext} twin was made`, 'ERR_IMAGED_NO_TWIN');
    return { picture: twin, source: answer.source };
  }

  /**
   * `/<origin>/<preset>/<key>`: the row of the origin's URL for the key, made on first request. A new row is
   * inserted inside the generation (under the gate, so a request refused as busy inserts nothing, and requests
   * for the same key in this process share the one insert), and deleted again when its first download finds
   * that the origin has no such key: a miss leaves no row behind, however many random keys are asked for. The row
   * is inserted UNSEEN (only a request wants it), so when the request ends before that download does (a
   * lis_downloadd claimed the row first and still holds it), or this process stops, lis_managerd's
   * `missed_origin_rows` check deletes it once the download has failed so: the mark is in the row, not here.
   */
  async originThumbnail(origin: string, preset: string, key: string, signal: AbortSignal): Promise<Answer> {
    const spec = this.runner.config.imaged.origins[origin];
    const url = originImageUrl(spec, key);
    if (codePointLength(url) > this.runner.config.enqueue.maxUrlLength) throw new NotMadeError(404, 'key too long');
    const hash = lis_hash_for_url(url);
    const row = await readRow(this.db, spec.country, hash);
    // The version the frontends serve (live_data), else the one being made.
    const version = row?.live_version ?? row?.version ?? 1;
    const name: ThumbnailName = { country: spec.country, hash, preset, ext: 'jpg', version };
    if (row) return this.thumbnail(name, signal);
    return this.gate.run(
      gateKey(name),
      async (unwanted) => {
        const inserted = await insertOriginRow(this.db, spec.country, spec.datasourceId, url);
        try {
          return await this.generate(name, UNSTOPPED, unwanted);
        } catch (error) {
          // Whatever the generation answered (404 from our own download or a daemon's, 503 after waiting for one):
          // the delete's conditions are what decide. After the generation, so its lock is released and nothing of
          // this process works the row; another process's generation finds a failed row, or none: 404 either way.
          if (inserted !== null && error instanceof NotMadeError && (await deleteMissedOriginRow(this.db, inserted)))
            throw new NotMadeError(404, `the origin has no key ${key}`);
          // Not deleted: maybe its download is still under way in a daemon; if that finds no key, missed_origin_rows deletes it.
          throw error;
        }
      },
      signal,
    );
  }

  private async fromStore(name: Omit<ThumbnailName, 'ext'>, ext: string): Promise<Picture | null> {
    const file = thumbnailStorePath(this.runner.config, thumbnailRelativePath(name.country, name.hash, name.preset, ext, name.version));
    // One open, then its handle: a miss costs one call on libuv's pool (which sharp's decodes share), not two.
    const handle = await open(file).catch(() => null);
    if (!handle) return null;
    try {
      const [bytes, info] = await Promise.all([handle.readFile(), handle.stat()]);
      return { bytes, mtime: info.mtime, ext };
    } catch {
      return null;
    } finally {
      await handle.close();
    }
  }

  /**
   * One generation, under the image's advisory lock (held by a transaction for the whole run). `unwanted`: the
   * gate's, aborted once every request for it has gone; a fetch of its original still waiting for its host's
   * turn is then left undone (HostSlots), and a queued row whose download was so left is given back untouched.
   */
  private async generate(name: ThumbnailName, signal: AbortSignal, unwanted: AbortSignal): Promise<Answer> {
    const runner: StageRunner = { ...this.runner, fetcher: this.hostSlots.forGeneration(unwanted), unwanted };
    const { config, log } = runner;
    const { country, hash, preset } = name;
    const label = `${country}/${hash}_${preset}${name.version > 1 ? `.v${name.version}` : ''}`;
    const timeoutMs = Math.ceil(config.imaged.timeoutSeconds * 1000);
    return this.runner.locks.transaction().execute(async (trx) => {
      const started = performance.now();
      const row = await lockImageRow(trx, country, hash, { preset, version: name.version }, timeoutMs);
      // Another process may have made it while we waited for the lock. A generation records its preset under this
      // lock, so a row past thumbnailing with no record of it has no file of it to find: skip the store's lookup.
      // (A crash between a file and its record costs one generation more: thumbnail() does not serve such a file as
      // it is (recordedOrNotOurs), so it comes here and is written again whole, the same bytes, and recorded.)
      // The file asked for, a twin too: looking for the JPEG alone, a twin lost from the store (its JPEG there) was
      // taken for made, and answered 404 for good where a lost JPEG is made again.
      const past = row?.stage === 'push' || row?.stage === 'live';
      const waited = !past || row.recorded ? await this.fromStore(name, name.ext) : null;
      if (waited) return { picture: waited, source: 'waited' as const };
      if (!row) throw new NotMadeError(404, 'no such image');
      if (row.stage === 'push' || row.stage === 'live') {
        // Only the names of a version the row has: the one being worked on (image_data) or the one served (live_data).
        if (name.version !== row.version && name.version !== row.live_version) throw new NotMadeError(404, `no version ${name.version} of this image`);
        this.generations++;
        // A row whose files are in another host's stores (nginx balances misses over every host's lis_imaged): the
        // picture is made here for the visitor, but not recorded. Recorded, its image_data named a file that host's
        // pusher looks for in its own store, never finds, and fails to push again and again (backfill pushes a
        // host's own rows only), while the frontends kept asking for it. That host's lis_imaged records it when
        // asked, or `lis rethumbnail --preset` makes it there.
        const elsewhere = !config.stores.shared && row.store_host !== '' && row.store_host !== config.host;
        const files = await makePresetOfRow(this.db, config, runner.fetcher, row, preset, name.version, elsewhere ? null : trx);
        log.info(`${label}: made from the original for a ${row.stage} row${elsewhere ? ` of ${row.store_host}'s stores (served, not recorded)` : ''}`, {
          scope: 'Imaged::make',
        });
        return { picture: await this.madePicture(name, files[0]), source: 'made' as const };
      }
      if (row.state === 'failed' || row.state === 'parked')
        throw new NotMadeError(404, `the image ${row.state === 'failed' ? 'failed' : 'is parked'} in stage ${row.stage}`);
      const outcome = await runRowStages(runner, row.id, signal, this.unreleased, this.held);
      // Its download left undone and the row given back: nobody is waiting for the answer.
      if (!outcome.claimed && unwanted.aborted) throw new RequestGoneError();
      if (outcome.claimed && !outcome.result.ok) throw await this.stageFailed(trx, country, hash, outcome.stage, outcome.result.failure);
      const ours = outcome.claimed && outcome.stage === 'thumbnail';
      if (ours) this.generations++;
      // Not ours (a daemon holds the row, or took it between two stages): its file once it has one.
      const made = (await this.fromStore(name, 'jpg')) ?? (await this.waitForDaemon(runner, row.id, name, timeoutMs - (performance.now() - started), signal));
      if (!made) {
        // Thumbnailed now, but not under this name: a version the row does not have (`.v2` of a new row) is 404 as
        // for any row past thumbnailing (above); a 503 would only send the client back for the same 404.
        const now = await readRow(trx, country, hash);
        if ((now?.stage === 'push' || now?.stage === 'live') && name.version !== now.version && name.version !== now.live_version)
          throw new NotMadeError(404, `no version ${name.version} of this image`);
        // Its original is in another host's store, for that host's lis_thumbnaild (this host cannot claim it): say so,
        // rather than "being worked by a daemon", which sent the operator looking for a worker that held nothing.
        const host = now?.stage === 'thumbnail' && now.locked_by === null ? now.store_host : '';
        if (host !== '' && host !== this.runner.config.host && !this.runner.config.stores.shared)
          throw new NotMadeError(
            503,
            `the image waits for its thumbnails on ${host}, whose store holds its original (its lis_thumbnaild makes them); try again shortly`,
          );
        throw new NotMadeError(503, 'the image is being worked by a daemon, or its files are under another name; try again shortly');
      }
      if (ours) log.info(`${label}: made by working the queued row's stages`, { scope: 'Imaged::make' });
      return { picture: made, source: ours ? ('made' as const) : ('waited' as const) };
    });
  }

  /** A row a daemon holds (or that waits for its retry time): its file once it has one, within the time left. */
  private async waitForDaemon(runner: StageRunner, id: string, name: ThumbnailName, leftMs: number, signal: AbortSignal): Promise<Picture | null> {
    const { country, hash, preset } = name;
    const deadline = performance.now() + Math.max(0, leftMs);
    while (performance.now() < deadline && !signal.aborted && !runner.unwanted?.aborted) {
      const found = await this.fromStore(name, 'jpg');
      if (found) return found;
      // How long until its retry, on the database's clock (the one the claim's due check uses): on this host's, a
      // host whose clock is fast took a row not yet due for due, and one whose clock is slow refused a due row.
      const row = await this.db
        .selectFrom('live_images')
        .select(['state', 'locked_by', 'next_attempt_at', 'last_error_class'])
        .select(sql<number>`extract(epoch FROM next_attempt_at - now())::float8`.as('due_in_seconds'))
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row || row.state !== 'waiting') return this.fromStore(name, 'jpg');
      if (row.locked_by === null) {
        // Given back (or between two stages) and due: work it here after all. Not due: nobody is making it (a
        // failure's backoff, or a row given back for our own fault), so say so and when to come back.
        if (row.due_in_seconds > 1) {
          const why = row.last_error_class ? ` (last error: ${row.last_error_class})` : '';
          throw new NotMadeError(503, `the image waits for its retry at ${row.next_attempt_at.toISOString()}${why}`, 'ERR_IMAGED_NOT_MADE', {
            retryAfterSeconds: Math.max(1, Math.ceil(row.due_in_seconds)),
          });
        }
        const outcome = await runRowStages(runner, id, signal, this.unreleased, this.held);
        if (outcome.claimed && !outcome.result.ok) throw await this.stageFailed(this.db, country, hash, outcome.stage, outcome.result.failure);
        // Not claimable here either (its files are on another host): that host's daemon will make it.
        if (!outcome.claimed) return null;
        if (outcome.stage === 'thumbnail') {
          this.generations++;
          this.runner.log.info(`${country}/${hash}_${preset}: made by working the queued row's stages`, { scope: 'Imaged::make' });
        }
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return null;
  }

  /**
   * The answer to a stage of ours that failed: our own fault (a store full, read-only or unreadable) is 503, the row
   * given back uncharged, never a 502 that blames the source; 404 when the row failed for good (no such image to
   * give); when failRows left it waiting for a retry (a timeout, a refused connection, a 5xx), the daemons will make
   * it after its backoff, so this is the source's passing fault, 502 with its error (as for a lost original), or 503
   * past download.
   */
  private async stageFailed(db: Db, country: string, hash: string, stage: string, failure: { errorClass: string; reason: string }): Promise<NotMadeError> {
    if (!isSourceFault(failure.errorClass))
      return new NotMadeError(
        503,
        `${stage}: ${failure.errorClass}: ${failure.reason} (our fault, not the image's; try again shortly)`,
        'ERR_IMAGED_NOT_MADE',
        {
          ours: true,
        },
      );
    const row = await readRow(db, country, hash);
    const status = row?.state !== 'waiting' ? 404 : stage === 'download' ? 502 : 503;
    return new NotMadeError(status, `${stage}: ${failure.errorClass}: ${failure.reason}${status === 404 ? '' : ' (to be retried)'}`);
  }

  /**
   * The file just written, answered from memory; only its mtime is read, so the ETag is the one nginx gives for it.
   * Never throws: it runs inside the transaction that records the preset, which an error here would roll back.
   */
  private async madePicture(name: ThumbnailName, file: { ext: string; data: Buffer }): Promise<Picture> {
    const path = thumbnailStorePath(this.runner.config, thumbnailRelativePath(name.country, name.hash, name.preset, file.ext, name.version));
    const info = await stat(path).catch(() => null);
    return { bytes: file.data, mtime: info?.mtime ?? new Date(), ext: file.ext };
  }
}
