import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { openDatabase, type Db } from '../db/connect.ts';
import { UsageError } from '../errors.ts';
import { isImageHash, lis_hash_for_url } from '../hash/image-hash.ts';
import { parseUrlLine } from '../intake/parse-url-line.ts';
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

  /** Connects (starting the embedded database when none is configured, as every command does). */
  static async open(options: OpenOptions = {}): Promise<ImageSys> {
    const config = typeof options.config === 'object' ? options.config : loadConfig({ file: options.config });
    return new ImageSys(await openDatabase(config), config);
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
   * ones have last_seen refreshed (so the weekly purge keeps them).
   */
  async imagesForSiBuild(photoUrls: string[], options: { country: string; datasourceId: number }): Promise<SiImage[]> {
    const country = parseCountry(options.country, this.config);
    const checked = photoUrls.map((url) => ({ url, parsed: parseUrlLine(url, options.datasourceId, this.config.enqueue.maxUrlLength) }));
    const good = [...new Set(checked.filter((c) => c.parsed.kind === 'url').map((c) => c.url))];
    const states = new Map<string, { stage: string; state: string; last_error: string | null; live: boolean }>();
    if (good.length) {
      const { rows } = await sql<{ image_url: string; stage: string; state: string; last_error: string | null; live: boolean }>`
        WITH ds AS (
          INSERT INTO datasources (country, datasource_id) VALUES (${country}, ${options.datasourceId}) ON CONFLICT DO NOTHING)
        INSERT INTO live_images AS li (country, datasource_id, image_url)
        SELECT ${country}, ${options.datasourceId}, u FROM unnest(${good}::text[]) AS u
        ON CONFLICT (country, image_hash) DO UPDATE SET last_seen = now()
        RETURNING li.image_url, li.stage, li.state, li.last_error, (li.live_data IS NOT NULL AND li.last_error_class IS DISTINCT FROM 'expired') AS live`.execute(this.db);
      for (const r of rows) states.set(r.image_url, r);
    }
    return checked.map(({ url, parsed }) => {
      if (parsed.kind !== 'url') return { url, hash: null, live: false, status: 'rejected', error: parsed.kind === 'bad' ? parsed.reason : 'empty' };
      const s = states.get(url);
      const status = !s ? 'download' : s.state === 'failed' || s.state === 'parked' ? s.state : s.stage;
      return { url, hash: lis_hash_for_url(url), live: s?.live ?? false, status, ...(s?.last_error && s.state === 'failed' ? { error: s.last_error } : {}) };
    });
  }

  /** Queues URLs for one country and datasource (refreshing last_seen of known ones); bad URLs come back with the reason. */
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
    const { rows } = await sql<{ inserted: string }>`
      WITH ds AS (
        INSERT INTO datasources (country, datasource_id) VALUES (${country}, ${options.datasourceId}) ON CONFLICT DO NOTHING),
      upserted AS (
        INSERT INTO live_images AS li (country, datasource_id, image_url)
        SELECT ${country}, ${options.datasourceId}, u FROM unnest(${unique}::text[]) AS u
        ON CONFLICT (country, image_hash) DO UPDATE SET last_seen = now()
        RETURNING (xmax = 0) AS inserted)
      SELECT count(*) FILTER (WHERE inserted) AS inserted FROM upserted`.execute(this.db);
    const inserted = Number(rows[0].inserted);
    return { inserted, refreshed: unique.length - inserted, rejected };
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
