/**
 * Columns a stage may write when it finishes a row, in the same statement
 * that moves the row on (so a result and its stage change land together),
 * with the SQL type a batch sends each in (one array per patched column).
 * A stage that needs another column adds it to its migration, to the type
 * and to this map.
 */
export const PATCH_COLUMN_TYPES = {
  image_data: 'jsonb',
  store_host: 'text',
  image_class: 'text',
  perceptual_hash: 'bigint',
  content_hash: 'text',
  etag: 'text',
  last_modified: 'text',
  downloaded_at: 'timestamptz',
  original_bytes: 'integer',
  original_format: 'text',
} as const;
/**
 * A timestamp's value "now, on the database's clock": PostgreSQL reads the timestamptz input 'now' as the current
 * transaction's start. A stamp from a host's own clock (JavaScript's Date) was out by that host's skew, while every
 * decision read against it (`lis refresh --older-than-days`, the status page's history) is on the database's clock.
 */
export const DATABASE_NOW = 'now';

export type PatchableColumn = keyof typeof PATCH_COLUMN_TYPES;
export const PATCHABLE_COLUMNS = Object.keys(PATCH_COLUMN_TYPES) as PatchableColumn[];

export interface RowPatch {
  image_data?: Record<string, unknown>;
  store_host?: string;
  /** Ignored on rows a person classified (`human_classified`). */
  image_class?: string;
  /** lis_thumbnaild: the picture's 64-bit dHash as a signed decimal string (bigint). */
  perceptual_hash?: string;
  /** lis_downloadd: SHA-256 hex of the original's bytes. */
  content_hash?: string;
  /** lis_downloadd: the server's ETag and Last-Modified, sent back on a refresh (null: none sent). */
  etag?: string | null;
  last_modified?: string | null;
  /** lis_downloadd: when the original was last fetched or confirmed unchanged: DATABASE_NOW (or ISO 8601). */
  downloaded_at?: string;
  original_bytes?: number;
  /** lis_downloadd: what the magic number says: jpeg, png, webp, gif, avif, heif, tiff. */
  original_format?: string;
}

/** The columns a batch writes, in a stable order; an unknown key is a programming error. */
export function patchedColumns(patches: Array<RowPatch | undefined>): PatchableColumn[] {
  const keys = new Set<string>();
  for (const patch of patches) for (const key of Object.keys(patch ?? {})) keys.add(key);
  for (const key of keys) {
    if (!(PATCHABLE_COLUMNS as readonly string[]).includes(key)) throw new TypeError(`finishRows: column ${key} is not patchable`);
  }
  return PATCHABLE_COLUMNS.filter((c) => keys.has(c));
}
