import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { LiveImage } from '../db/schema.ts';
import { isImageHash, lis_hash_for_url } from '../hash/image-hash.ts';
import { thumbnailFilesOf, type ImageData } from '../store/image-data.ts';
import { UNSEEN } from '../queue/enqueue-rows.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';

export interface ImageLookup {
  row: Record<string, unknown>;
  /** What happened to it, oldest first, from the row's timestamps and its push records. */
  history: Array<{ at: string; what: string }>;
  pushes: Array<{ frontend: string; pushed_at: string | null; attempts: number; last_error: string | null }>;
  /** Relative paths of its thumbnails (served by the page from the thumbnail store). */
  thumbnails: string[];
}

/** Rows for a URL (by its hash) or a hash, in every country; with history and thumbnails. */
export async function lookupImage(db: Db, query: string): Promise<ImageLookup[]> {
  const q = query.trim();
  const hash = isImageHash(q.toLowerCase()) ? q.toLowerCase() : lis_hash_for_url(q);
  // `unseen`: made by a request to lis_imaged for an origin key, and named by no listing since (UNSEEN).
  const { rows } = await sql<Omit<LiveImage, 'image_data' | 'live_data'> & { image_data: ImageData | null; live_data: ImageData | null; unseen: boolean }>`
    SELECT *, ${UNSEEN} AS unseen FROM live_images WHERE image_hash = ${hash} ORDER BY country`.execute(db);
  const out: ImageLookup[] = [];
  for (const row of rows) {
    const { rows: pushes } = await sql<{ frontend: string; pushed_at: Date | null; attempts: number; last_error: string | null }>`
      SELECT frontend, pushed_at, attempts, last_error FROM frontend_pushes
       WHERE country = ${row.country} AND image_hash = ${row.image_hash} ORDER BY frontend`.execute(db);
    const history: Array<{ at: string; what: string }> = [];
    const at = (v: unknown) => (v instanceof Date ? v.toISOString() : typeof v === 'string' ? v : null);
    const push = (v: unknown, what: string) => {
      const t = at(v);
      if (t) history.push({ at: t, what });
    };
    push(row.insert_time, row.unseen ? 'queued by a request to lis_imaged (an origin key)' : 'queued by the ETL');
    push(row.downloaded_at, `original downloaded${row.original_bytes ? ` (${row.original_bytes} bytes, ${row.original_format ?? '?'})` : ''}`);
    for (const p of pushes) push(p.pushed_at, `pushed to ${p.frontend}`);
    push(row.updated_at, `now ${row.stage}/${row.state}${row.last_error ? `: ${row.last_error}` : ''} (attempts ${row.attempts})`);
    if (!row.unseen) push(row.last_seen, 'last seen by the ETL');
    history.sort((a, b) => a.at.localeCompare(b.at));
    out.push({
      // A person's word (lis image classify) is shown as such; `serving` says whether the frontends
      // serve a version of it (also while it is reworked).
      // The URL's password (userinfo) is for the source, not the operator's page (maskUrlPasswords).
      row: {
        ...row,
        image_url: maskUrlPasswords(row.image_url),
        classified_by: row.human_classified ? 'a person (lis image classify)' : 'automatic',
        serving: row.live_data != null ? 'yes' : 'no',
      },
      history,
      pushes: pushes.map((p) => ({ ...p, pushed_at: at(p.pushed_at) })),
      thumbnails: thumbnailFilesOf(row.live_data ?? row.image_data),
    });
  }
  return out;
}
