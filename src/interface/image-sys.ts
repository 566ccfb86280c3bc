import { sql } from 'kysely';
import type { LisConfig, LisConfigInput } from '../config/config-schema.ts';
import { parseCountry } from '../config/country.ts';
import { loadConfig, parseConfig } from '../config/load-config.ts';
import { closeDb, createDb, type Db } from '../db/connect.ts';
import { connectionFailure, describeServer } from '../db/connection-failure.ts';
import { serviceQueryBounds, type QueryBounds } from '../db/query-bounds.ts';
import { embeddedUrl } from '../db/embedded-server.ts';
import { sslTrouble } from '../db/database-error.ts';
import { assertSchemaCurrent } from '../db/schema-version.ts';
import { assertServerFit } from '../db/server-fit.ts';
import { askSslPrefer } from '../db/ssl-prefer.ts';
import { LisError, UsageError, errorMessage } from '../errors.ts';
import { isImageHash, lis_hash_for_url } from '../hash/image-hash.ts';
import { checkUrl } from '../intake/parse-url-line.ts';
import { isRowDataError, storeBatch, type BatchOutcome } from '../intake/store-batch.ts';
import { enqueueRowStates, type EnqueuedRow } from '../queue/enqueue-rows.ts';
import type { ImageData } from '../store/image-data.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { toSearchApiImage, type SearchApiImage } from './search-api-image.ts';

export interface OpenOptions {
  /**
   * A config object (as a config file holds it: what it leaves out takes the defaults), or a config file's
   * path; default: as every command finds it ($LIS_CONFIG, ./imagesys.json, defaults).
   */
  config?: LisConfigInput | string;
  /**
   * How long a connect and a query may go unanswered (a database that hangs: a lost path, a frozen server)
   * before the call fails with ERR_DATABASE_TIMEOUT; default: the config's database.connectTimeoutSeconds
   * and database.queryTimeoutSeconds (10 s, 120 s), the bounds every long-running process shares. A
   * listing page passes its own budget (e.g. `{ connectMs: 2000, queryMs: 3000 }`, its calls being one
   * index lookup of a few ms); a search-index build can afford the config's.
   */
  bounds?: { connectMs?: number; queryMs?: number };
}

/** A day, as the config's timeouts: past 24.8 days Node's timers fire at once. */
const MAX_BOUND_MS = 86_400_000;

/** The bounds of open(): the caller's, each in (0, a day] ms, over the config's. */
function openBounds(given: unknown, config: LisConfig): QueryBounds {
  const bounds = serviceQueryBounds(config);
  if (given === undefined) return withPoolWait(bounds);
  if (typeof given !== 'object' || given === null)
    throw usage('open', `bounds must be an object such as { connectMs: 2000, queryMs: 3000 }, got ${shown(given)}`);
  for (const key of ['connectMs', 'queryMs'] as const) {
    const ms = (given as Record<string, unknown>)[key];
    if (ms === undefined) continue;
    if (typeof ms !== 'number' || !(ms > 0 && ms <= MAX_BOUND_MS))
      throw usage('open', `bounds.${key} must be a number of milliseconds above 0 and at most ${MAX_BOUND_MS}, got ${shown(ms)}`);
    bounds[key] = ms;
  }
  return withPoolWait(bounds);
}

/**
 * A call waits for one of the pool's connections at most as long as a call ahead of it may take (a connect and
 * a query): behind a database that hangs, calls of a busy listing site would otherwise queue for the pool
 * without end, each waiting its turn to run into the bounds (60 calls on a pool of 2, bounds 0.2 s and 0.3 s:
 * the last failed after 7.2 s, now all within 2.4 s).
 */
function withPoolWait(bounds: QueryBounds): QueryBounds {
  return { ...bounds, poolWaitMs: bounds.connectMs + (bounds.queryMs ?? 0) };
}

/** pg-pool's words when a query waited poolWaitMs for a connection. */
const POOL_WAIT_TIMEOUT = 'timeout exceeded when trying to connect';

/** One of a listing's photos, for the search-index build. */
export interface SiImage {
  url: string;
  /** lis_hash_for_url(url); null when the URL is not acceptable (see `error`). */
  hash: string | null;
  /** True when the image is live: its thumbnails are on every frontend (also while it is reworked). */
  live: boolean;
  /**
   * Where it stands: the stage it waits in or is worked in (`download`, `thumbnail`, `push`), `live`, `failed`
   * (with `error`, its last failure; `lis retry`), `parked` (its datasource disabled, or being purged: not seen
   * by the ETL for upkeep.purgeAfterDays), or `rejected` (with `error`: the URL is not acceptable).
   */
  status: 'download' | 'thumbnail' | 'push' | 'live' | 'failed' | 'parked' | 'rejected';
  /** Why, for `failed` and `rejected`. */
  error?: string;
}

/**
 * The Interface is called from plain JavaScript too, where nothing checks its
 * arguments before they reach us. A wrong argument is the caller's mistake:
 * it is refused as UsageError (ERR_USAGE) naming the argument, never passed on
 * to PostgreSQL (a raw 22P02 for datasourceId 'x', or a datasource -1 stored).
 */
function usage(method: string, message: string): UsageError {
  return new UsageError(`ImageSys.${method}: ${message}`);
}

/** A wrong value as the caller would recognise it: `"5"`, `NaN`, `undefined`. */
const shown = (value: unknown) => (typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value)));

function requireArray(method: string, name: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) throw usage(method, `${name} must be an array, got ${value === null ? 'null' : typeof value}`);
  return value;
}

/** The country and datasource of enqueue and imagesForSiBuild: the same bounds as `lis enqueue --datasource`. */
function listingOptions(method: string, options: unknown, config: LisConfig): { country: string; datasourceId: number } {
  if (typeof options !== 'object' || options === null) throw usage(method, 'options { country, datasourceId } are required');
  const { country, datasourceId } = options as { country?: unknown; datasourceId?: unknown };
  if (typeof country !== 'string') throw usage(method, `country must be a string such as 'uk', got ${shown(country)}`);
  if (typeof datasourceId !== 'number' || !Number.isSafeInteger(datasourceId) || datasourceId < 0 || datasourceId > 999_999_999)
    throw usage(method, `datasourceId must be a whole number from 0 to 999999999, got ${shown(datasourceId)}`);
  return { country: parseCountry(country, config, `ImageSys.${method}: country`), datasourceId };
}

/** One URL as listing code gave it: checked by the URL rules, never trimmed or read as a line of `lis enqueue` input. */
function urlVerdict(value: unknown, maxUrlLength: number): { ok: true } | { ok: false; reason: string } {
  if (typeof value !== 'string') return { ok: false, reason: `not a string: ${value === null ? 'null' : typeof value}` };
  return checkUrl(value, maxUrlLength);
}

/**
 * A bound of open()'s ran out (the database hangs): ERR_DATABASE_TIMEOUT, "ImageSys.<method>: the database at
 * ... is not answering: no reply to a query in 3 s"; null for any other error.
 */
function notAnswering(method: string, url: string, error: unknown): LisError | null {
  if (errorMessage(error) === POOL_WAIT_TIMEOUT)
    return new LisError(
      'ERR_DATABASE_TIMEOUT',
      `ImageSys.${method}: the database at ${describeServer(url)} is not answering: no connection of its pool (database.poolSize) free within a connect and a query bound`,
      { cause: error },
    );
  const failure = connectionFailure(url, error);
  if (failure?.code !== 'ERR_DATABASE_TIMEOUT') return null;
  return new LisError('ERR_DATABASE_TIMEOUT', `ImageSys.${method}: ${failure.message}`, { cause: error });
}

/**
 * The server gone under a call (stopped, restarting, unreachable) is said as
 * open() says it, ERR_DATABASE naming the server, not as pg's bare "Connection
 * terminated unexpectedly" (no code) or a 57P01 from a connection the restart
 * killed; one that hangs is ERR_DATABASE_TIMEOUT once a bound ran out. The
 * pool drops dead connections (and those a bound ended), so a call once the
 * server answers again works.
 */
function unreachable(method: string, url: string, error: unknown): unknown {
  const timedOut = notAnswering(method, url, error);
  if (timedOut) return timedOut;
  const code = (error as { code?: unknown } | null)?.code;
  const shutDown = typeof code === 'string' && /^57P0[123]$/.test(code); // admin_shutdown, crash_shutdown, cannot_connect_now
  if (!shutDown && !connectionFailure(url, error)) return error;
  return new LisError('ERR_DATABASE', `ImageSys.${method}: the database at ${describeServer(url)} cannot be reached: ${errorMessage(error)}`, {
    cause: error,
  });
}

export interface EnqueueResult {
  inserted: number;
  refreshed: number;
  rejected: Array<{ url: string; reason: string }>;
}

/**
 * The only thing other code imports from ImageSys. Every call is one
 * database round trip, however many images it is asked about; a call that
 * queues URLs makes two, its datasource row first (the queue's lock order).
 */
export class ImageSys {
  private closed = false;
  private closing: Promise<void> | null = null;
  /** The calls started and not yet settled, which close() lets finish. */
  private readonly inFlight = new Set<Promise<unknown>>();

  // JavaScript's own private fields, not TypeScript's `private`: listing code that logs or serialises an ImageSys
  // (console.log, JSON.stringify, a logger's meta) would otherwise print the database URL with its password.
  readonly #db: Db;
  readonly #config: LisConfig;
  readonly #url: string;
  /** How long close() waits for the server to close the connections (the connect bound), before cutting them. */
  readonly #closeWaitMs: number;

  private constructor(db: Db, config: LisConfig, url: string, closeWaitMs: number) {
    this.#db = db;
    this.#config = config;
    this.#url = url;
    this.#closeWaitMs = closeWaitMs;
  }

  /** A call after close() is the caller's bug; said as one, with a stable code, not as the pool's "driver has already been destroyed". */
  private assertOpen(method: string): void {
    if (this.closed) throw new LisError('ERR_CLOSED', `ImageSys.${method}: ImageSys is closed; open() a new one`);
  }

  /**
   * One call, counted until it settles so that close() ends the pool only after it: pg's pool, ended,
   * neither serves nor rejects the calls still waiting for one of its connections, which then never settle.
   */
  private run<T>(method: string, work: () => Promise<T>): Promise<T> {
    const call = (async () => {
      this.assertOpen(method);
      return work();
    })();
    this.inFlight.add(call);
    const settled = () => this.inFlight.delete(call);
    call.then(settled, settled);
    return call;
  }

  /**
   * Connects to the configured server (the embedded one's address when no URL
   * is configured). A client, not an installer: it never starts a server and
   * never migrates. Throws ERR_SCHEMA_BEHIND when the database lacks
   * migrations this code knows (`lis db migrate`); ERR_DATABASE_POOLER, ERR_DATABASE_VERSION for a configured
   * server behind a transaction pooler or too old (server-fit.ts; a read-only one is opened: a listing page may
   * read from a replica); ERR_DATABASE when the
   * server cannot be reached, ERR_DATABASE_TIMEOUT when it does not answer
   * within the bounds (OpenOptions.bounds), as every call does.
   */
  static async open(options: OpenOptions = {}): Promise<ImageSys> {
    // From plain JavaScript: null would be a TypeError here, a path given bare (not as `config`) ignored for the defaults.
    if (typeof options !== 'object' || options === null)
      throw usage('open', `options must be an object such as { config: '/etc/imagesys/config.json' }, got ${shown(options)}`);
    const given: unknown = options.config;
    if (given !== undefined && (given === null || given === '' || (typeof given !== 'string' && typeof given !== 'object')))
      throw usage('open', `config must be a config object or a config file's path, got ${shown(given)}`);
    // An object is validated like a file (a partial object would otherwise fail later, in the middle of a call).
    const config =
      typeof options.config === 'object' && options.config !== null
        ? parseConfig(options.config, {}, process.cwd(), 'the config given to ImageSys.open')
        : loadConfig({ file: options.config });
    const bounds = openBounds(options.bounds, config);
    const url = config.database.url ?? embeddedUrl(config.database.embedded);
    // sslmode=prefer (or allow): as libpq, plain when the server takes no SSL (ssl-prefer.ts).
    await askSslPrefer(url, bounds?.connectMs ?? config.database.connectTimeoutSeconds * 1000);
    const db = createDb(url, config.database.poolSize, () => {}, bounds);
    try {
      // Not refused when read-only: a listing page may read from a replica (its writes then fail, saying why).
      if (config.database.url !== null)
        await assertServerFit(db, url, maskUrlPasswords(url), { writes: false, connectMs: bounds?.connectMs, queryMs: bounds?.queryMs });
      await assertSchemaCurrent(db, maskUrlPasswords(url));
    } catch (error) {
      await closeDb(db, bounds.connectMs);
      const timedOut = notAnswering('open', url, error);
      if (timedOut) throw timedOut;
      if (error instanceof LisError) throw error;
      const ssl = sslTrouble(error);
      const hint = ssl ? ` (${ssl})` : config.database.url ? '' : ' (the embedded server: is it started? `lis db start`)';
      throw new LisError('ERR_DATABASE', `ImageSys cannot reach the database at ${maskUrlPasswords(url)}${hint}: ${errorMessage(error)}`, { cause: error });
    }
    return new ImageSys(db, config, url, bounds.connectMs);
  }

  /** What the search API shows for a live image, or null when it is not live (or unknown). */
  async getSearchApiDataForHash(hash: string, options: { country?: string } = {}): Promise<SearchApiImage | null> {
    return (await this.searchApiData('getSearchApiDataForHash', [hash], options)).get(hash) ?? null;
  }

  /** The batch form: every hash asked for is in the map, null where not live. */
  getSearchApiDataForHashes(hashes: readonly string[], options: { country?: string } = {}): Promise<Map<string, SearchApiImage | null>> {
    return this.searchApiData('getSearchApiDataForHashes', hashes, options);
  }

  /** Both forms' work; `method`, the one the caller called, names it in every error. */
  private searchApiData(method: string, hashes: readonly string[], options: { country?: string }): Promise<Map<string, SearchApiImage | null>> {
    return this.run(method, () => this.searchApiDataOf(method, hashes, options));
  }

  private async searchApiDataOf(method: string, hashes: readonly string[], options: { country?: string }): Promise<Map<string, SearchApiImage | null>> {
    requireArray(method, 'hashes', hashes);
    if (typeof options !== 'object' || options === null) throw usage(method, 'options must be an object such as { country: "uk" }');
    if (options.country !== undefined && typeof options.country !== 'string')
      throw usage(method, `country must be a string such as 'uk', got ${shown(options.country)}`);
    // A string, not anything whose String() is a hash: ['a30f...'] would pass the pattern and be answered null.
    for (const h of hashes as unknown[])
      if (typeof h !== 'string' || !isImageHash(h)) throw usage(method, `not an image hash (32 lowercase hex digits): ${shown(h)}`);
    const country = options.country === undefined ? undefined : parseCountry(options.country, this.#config, `ImageSys.${method}: country`);
    const result = new Map<string, SearchApiImage | null>(hashes.map((h) => [h, null]));
    if (hashes.length === 0) return result;
    // live_data: the version on every frontend; a row being reworked keeps answering with it (not one being purged).
    const { rows } = await sql<{ image_hash: string; country: string; image_url: string; image_class: string | null; image_data: ImageData | null }>`
      SELECT image_hash, country, image_url, image_class, live_data AS image_data FROM live_images
       WHERE image_hash = ANY(${[...new Set(hashes)]}::text[]) AND live_data IS NOT NULL AND last_error_class IS DISTINCT FROM 'expired'
         AND ${country === undefined ? sql`true` : sql`country = ${country}`}`
      .execute(this.#db)
      .catch((error: unknown) => {
        throw unreachable(method, this.#url, error);
      });
    for (const row of rows) result.set(row.image_hash, toSearchApiImage(row, this.#config.searchApi.thumbnailBaseUrl));
    return result;
  }

  /**
   * A listing's photos for the search-index build, in the order given: each
   * URL's hash and where it stands. URLs not yet known are queued; known
   * ones have last_seen refreshed (so the weekly purge keeps them). A URL the
   * parser or the table refuses is `rejected` with its reason, alone.
   */
  imagesForSiBuild(photoUrls: readonly string[], options: { country: string; datasourceId: number }): Promise<SiImage[]> {
    return this.run('imagesForSiBuild', () => this.siImages(photoUrls, options));
  }

  private async siImages(photoUrls: readonly string[], options: { country: string; datasourceId: number }): Promise<SiImage[]> {
    const { country, datasourceId } = listingOptions('imagesForSiBuild', options, this.#config);
    const checked = requireArray('imagesForSiBuild', 'photoUrls', photoUrls).map((url) => ({
      url: url as string,
      verdict: urlVerdict(url, this.#config.enqueue.maxUrlLength),
    }));
    const good = [...new Set(checked.filter((c) => c.verdict.ok).map((c) => c.url))];
    const states = new Map<string, EnqueuedRow>();
    const refused = new Map<string, string>();
    if (good.length) {
      const queue = (urls: string[]) =>
        enqueueRowStates(
          this.#db,
          country,
          urls.map((url) => ({ datasourceId, url })),
        );
      let rows;
      try {
        rows = await queue(good);
      } catch (error) {
        if (!isRowDataError(error)) throw unreachable('imagesForSiBuild', this.#url, error);
        // Rare: a row the table refuses. Find it (and only it), then read the others' states.
        for (const r of (await this.storeUrls('imagesForSiBuild', country, datasourceId, good)).refused) refused.set(r.row.url, r.reason);
        rows = await queue(good.filter((u) => !refused.has(u)));
      }
      for (const r of rows) states.set(r.url, r);
    }
    return checked.map(({ url, verdict }) => {
      if (!verdict.ok) return { url, hash: null, live: false, status: 'rejected', error: verdict.reason };
      if (refused.has(url)) return { url, hash: null, live: false, status: 'rejected', error: refused.get(url) };
      const s = states.get(url);
      const status = (!s ? 'download' : s.state === 'failed' || s.state === 'parked' ? s.state : s.stage) as SiImage['status'];
      return { url, hash: lis_hash_for_url(url), live: s?.live ?? false, status, ...(s?.lastError && s.state === 'failed' ? { error: s.lastError } : {}) };
    });
  }

  /** Queues URLs for one country and datasource (refreshing last_seen of known ones); bad URLs come back with the reason, each alone. */
  enqueue(urls: readonly string[], options: { country: string; datasourceId: number }): Promise<EnqueueResult> {
    return this.run('enqueue', () => this.queueUrls(urls, options));
  }

  private async queueUrls(urls: readonly string[], options: { country: string; datasourceId: number }): Promise<EnqueueResult> {
    const { country, datasourceId } = listingOptions('enqueue', options, this.#config);
    const rejected: EnqueueResult['rejected'] = [];
    const good: string[] = [];
    for (const url of requireArray('enqueue', 'urls', urls)) {
      const verdict = urlVerdict(url, this.#config.enqueue.maxUrlLength);
      if (verdict.ok) good.push(url as string);
      else rejected.push({ url: url as string, reason: verdict.reason });
    }
    const unique = [...new Set(good)];
    if (unique.length === 0) return { inserted: 0, refreshed: 0, rejected };
    const outcome = await this.storeUrls('enqueue', country, datasourceId, unique);
    for (const r of outcome.refused) rejected.push({ url: r.row.url, reason: r.reason });
    return { inserted: outcome.inserted, refreshed: outcome.refreshed, rejected };
  }

  /**
   * Stores URLs through the intake's batch rules; a batch the database keeps failing is an error, never a
   * silent loss. The server away after the retries is ERR_DATABASE, as every other call says it: the
   * batch is not the cause, so ERR_ENQUEUE_INCOMPLETE is kept for a batch that failed for another reason.
   */
  private async storeUrls(method: string, country: string, datasourceId: number, urls: string[]): Promise<BatchOutcome> {
    const outcome = await storeBatch(
      this.#db,
      country,
      urls.map((url) => ({ datasourceId, url })),
    );
    if (outcome.failed.length) {
      const { error, reason } = outcome.failed[0];
      const away = unreachable(method, this.#url, error);
      if (away !== error) throw away;
      throw new LisError('ERR_ENQUEUE_INCOMPLETE', `${outcome.failed.length} URLs not stored: ${reason}`);
    }
    return outcome;
  }

  /**
   * Ends the connections once the calls in flight have settled (each within its bounds); calls made from
   * now on throw ERR_CLOSED. Once is enough: a second close() waits for the first. A server that does not close
   * its side within the connect bound (frozen, its host hung) has the connections cut: left open, they kept the
   * listing process from exiting until it ran again.
   */
  close(): Promise<void> {
    this.closed = true;
    return (this.closing ??= (async () => {
      while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
      await closeDb(this.#db, this.#closeWaitMs);
    })());
  }
}
