import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { createDb, redactUrl, type Db } from '../db/connect.ts';
import { embeddedUrl } from '../db/embedded-server.ts';
import { assertSchemaCurrent } from '../db/schema-version.ts';
import { LisError, UsageError, errorMessage } from '../errors.ts';
import { isImageHash, lis_hash_for_url } from '../hash/image-hash.ts';
import { parseUrlLine } from '../intake/parse-url-line.ts';
import { isRowDataError, storeBatch, type BatchOutcome } from '../intake/store-batch.ts';
import type { ImageData } from '../store/image-data.ts';
import { toSearchApiImage, type SearchApiImage } from './search-api-image.ts';

export interface OpenOptions {
  /** A config object, or a config file's path; default: as every command finds it ($LIS_CONFIG, ./imagesys.json, defaults). */
  config?: LisConfig | string;
}

/** One of a listing's photos, for the search-index build. */
export interface SiImage {
  url: string;
  /** lis_hash_for_url(url); null when the URL is not acceptable (see `error`). */
  hash: string | null;
  /** True when the image is live: its thumbnails are on every frontend (also while it is reworked). */
  live: boolean;
  /** Where it stands: `download`, `thumbnail`, `push`, `live`, or `failed`/`parked` with `error`. */
  status: string;
  error?: string;
}

export interface EnqueueResult {
  inserted: number;
  refreshed: number;
  rejected: Array<{ url: string; reason: string }>;
}

/**
 * The only thing other code imports from ImageSys. Every call is one
 * database round trip, however many images it is asked about.
 */
export class ImageSys {
  private constructor(
    private readonly db: Db,
    private readonly config: LisConfig,
  ) {}

  /**
   * Connects to the configured server (the embedded one's address when no URL
   * is configured). A client, not an installer: it never starts a server and
   * never migrates. Throws ERR_SCHEMA_BEHIND when the database lacks
   * migrations this code knows (`lis db migrate`), ERR_DATABASE when the
   * server cannot be reached.
   */
  static async open(options: OpenOptions = {}): Promise<ImageSys> {
    const config = typeof options.config === 'object' ? options.config : loadConfig({ file: options.config });
    const url = config.database.url ?? embeddedUrl(config.database.embedded);
    const db = createDb(url, config.database.poolSize);
    try {
      await assertSchemaCurrent(db, redactUrl(url));
    } catch (error) {
      await db.destroy();
      if (error instanceof LisError) throw error;
      const hint = config.database.url ? '' : ' (the embedded server: is it started? `lis db start`)';
      throw new LisError('ERR_DATABASE', `ImageSys cannot reach the database at ${redactUrl(url)}${hint}: ${errorMessage(error)}`, { cause: error });
    }
    return new ImageSys(db, config);
  }

  /** What the search API shows for a live image, or null when it is not live (or unknown). */
  async getSearchApiDataForHash(hash: string, options: { country?: string } = {}): Promise<SearchApiImage | null> {
    return (await this.getSearchApiDataForHashes([hash], options)).get(hash) ?? null;
  }

  /** The batch form: every hash asked for is in the map, null where not live. */
  async getSearchApiDataForHashes(hashes: string[], options: { country?: string } = {}): Promise<Map<string, SearchApiImage | null>> {
    for (const h of hashes) if (!isImageHash(h)) throw new UsageError(`not an image hash (32 lowercase hex digits): ${JSON.stringify(h)}`);
    const country = options.country === undefined ? undefined : parseCountry(options.country, this.config);
    const result = new Map<string, SearchApiImage | null>(hashes.map((h) => [h, null]));
    if (hashes.length === 0) return result;
    // live_data: the version on every frontend; a row being reworked keeps answering with it (not one being purged).
    const { rows } = await sql<{ image_hash: string; country: string; image_url: string; image_class: string | null; image_data: ImageData | null }>`
      SELECT image_hash, country, image_url, image_class, live_data AS image_data FROM live_images
       WHERE image_hash = ANY(${[...new Set(hashes)]}::text[]) AND live_data IS NOT NULL AND last_error_class IS DISTINCT FROM 'expired'
         AND ${country === undefined ? sql`true` : sql`country = ${country}`}`.execute(this.db);
    for (const row of rows) result.set(row.image_hash, toSearchApiImage(row, this.config.searchApi.thumbnailBaseUrl));
    return result;
  }

  /**
   * A listing's photos for the search-index build, in the order given: each
   * URL's hash and where it stands. URLs not yet known are queued; known
   * ones have last_seen refreshed (so the weekly purge keeps them). A URL the
   * parser or the table refuses is `rejected` with its reason, alone.
   */
  async imagesForSiBuild(photoUrls: string[], options: { country: string; datasourceId: number }): Promise<SiImage[]> {
    const country = parseCountry(options.country, this.config);
    const checked = photoUrls.map((url) => ({ url, parsed: parseUrlLine(url, options.datasourceId, this.config.enqueue.maxUrlLength) }));
    const good = [...new Set(checked.filter((c) => c.parsed.kind === 'url').map((c) => c.url))];
    const states = new Map<string, { stage: string; state: string; last_error: string | null; live: boolean }>();
    const refused = new Map<string, string>();
    if (good.length) {
      const upsert = (urls: string[]) =>
        sql<{ image_url: string; stage: string; state: string; last_error: string | null; live: boolean }>`
        WITH ds AS (
          INSERT INTO datasources (country, datasource_id) VALUES (${country}, ${options.datasourceId}) ON CONFLICT DO NOTHING)
        INSERT INTO live_images AS li (country, datasource_id, image_url)
        SELECT ${country}, ${options.datasourceId}, u FROM unnest(${urls}::text[]) AS u
        ON CONFLICT (country, image_hash) DO UPDATE SET last_seen = now()
        RETURNING li.image_url, li.stage, li.state, li.last_error, (li.live_data IS NOT NULL AND li.last_error_class IS DISTINCT FROM 'expired') AS live`.execute(
          this.db,
        );
      let rows;
      try {
        ({ rows } = await upsert(good));
      } catch (error) {
        if (!isRowDataError(error)) throw error;
        // Rare: a row the table refuses. Find it (and only it), then read the others' states.
        for (const r of (await this.storeUrls(country, options.datasourceId, good)).refused) refused.set(r.row.url, r.reason);
        ({ rows } = await upsert(good.filter((u) => !refused.has(u))));
      }
      for (const r of rows) states.set(r.image_url, r);
    }
    return checked.map(({ url, parsed }) => {
      if (parsed.kind !== 'url') return { url, hash: null, live: false, status: 'rejected', error: parsed.kind === 'bad' ? parsed.reason : 'empty' };
      if (refused.has(url)) return { url, hash: null, live: false, status: 'rejected', error: refused.get(url) };
      const s = states.get(url);
      const status = !s ? 'download' : s.state === 'failed' || s.state === 'parked' ? s.state : s.stage;
      return { url, hash: lis_hash_for_url(url), live: s?.live ?? false, status, ...(s?.last_error && s.state === 'failed' ? { error: s.last_error } : {}) };
    });
  }

  /** Queues URLs for one country and datasource (refreshing last_seen of known ones); bad URLs come back with the reason, each alone. */
  async enqueue(urls: string[], options: { country: string; datasourceId: number }): Promise<EnqueueResult> {
    const country = parseCountry(options.country, this.config);
    const rejected: EnqueueResult['rejected'] = [];
    const good: string[] = [];
    for (const url of urls) {
      const parsed = parseUrlLine(url, options.datasourceId, this.config.enqueue.maxUrlLength);
      if (parsed.kind === 'url') good.push(url);
      else rejected.push({ url, reason: parsed.kind === 'bad' ? parsed.reason : 'empty' });
    }
    const unique = [...new Set(good)];
    if (unique.length === 0) return { inserted: 0, refreshed: 0, rejected };
    const outcome = await this.storeUrls(country, options.datasourceId, unique);
    for (const r of outcome.refused) rejected.push({ url: r.row.url, reason: r.reason });
    return { inserted: outcome.inserted, refreshed: outcome.refreshed, rejected };
  }

  /** Stores URLs through the intake's batch rules; a batch the database keeps failing is an error, never a silent loss. */
  private async storeUrls(country: string, datasourceId: number, urls: string[]): Promise<BatchOutcome> {
    const outcome = await storeBatch(
      this.db,
      country,
      urls.map((url) => ({ datasourceId, url })),
    );
    if (outcome.failed.length) throw new LisError('ERR_ENQUEUE_INCOMPLETE', `${outcome.failed.length} URLs not stored: ${outcome.failed[0].reason}`);
    return outcome;
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
