import { sql } from 'kysely';
import type { Db } from '../../src/db/connect.ts';

/**
 * How a frontend's push records look: `complete` has every row served (the version served) and half the rows
 * waiting in push; `gaps` as complete, but some rows have no record and some only a failed first push; `stale`
 * as complete, but some records hold an older version, some a later push that failed (the older version
 * kept), a few a pre-digest record (pushed, no digest); `none` has no records (added after the rows went live).
 */
export type RecordKind = 'complete' | 'gaps' | 'stale' | 'none';

export interface LagMixFrontend {
  name: string;
  kind: RecordKind;
  enabled?: boolean;
}

/**
 * Rows and push records of every kind the frontend lag tells apart, `rows` of them over uk (nine tenths) and
 * fr, made by SQL in a few statements (200k rows in seconds). By `g % 100`: 0-69 live; 70-74 live from before
 * live_data (only image_data); 75-79 new, waiting in push; 80-84 reworked, waiting in push (live_data the
 * version served, image_data the new one); 85 re-thumbnail waiting (image_data still the served version);
 * 86-87 re-thumbnailed, image_data new; 88-89 refresh waiting in download; 90 refresh failed for good (404);
 * 91 live but expired (being purged); 92 new, failed in push; 93-95 new, in download; 96 new, in thumbnail;
 * 97 reworked, waiting in push, expired; 98 live; 99 live with no presets. Records also for rows gone
 * (deleted), and updated_at distinct per frontend and country, so "its latest record" is one record.
 */
export async function fillLagMix(db: Db, rows: number, frontends: LagMixFrontend[]): Promise<void> {
  const version = (v: number) => sql`jsonb_build_object(
      'original', jsonb_build_object('width', 640, 'height', 480, 'format', 'jpeg', 'bytes', 40000 + g),
      'contentHash', md5(url),
      'presets', jsonb_build_object(
        'small', jsonb_build_object('path', country || '/' || substr(md5(url), 1, 2) || '/' || md5(url) || '_small.jpg', 'width', 64, 'height', 48, 'bytes', 5000 + g % 997 + ${v}::int),
        'medium', jsonb_build_object('path', country || '/' || substr(md5(url), 1, 2) || '/' || md5(url) || '_medium.jpg', 'width', 160, 'height', 120, 'bytes', 15000 + g % 991 + ${v}::int),
        'large', jsonb_build_object('path', country || '/' || substr(md5(url), 1, 2) || '/' || md5(url) || '_large.jpg', 'width', 320, 'height', 240, 'bytes', 35000 + g % 983 + ${v}::int)))`;
  await sql`
    INSERT INTO live_images (country, datasource_id, image_url, stage, state, store_host, image_data, live_data, last_error_class)
    SELECT country, 1, url, stage, state, host,
           CASE WHEN k BETWEEN 93 AND 95 THEN NULL
                WHEN k = 99 THEN jsonb_build_object('original', jsonb_build_object('width', 1, 'height', 1, 'format', 'jpeg', 'bytes', 1))
                WHEN k = 85 OR k BETWEEN 88 AND 90 THEN ${version(0)} ELSE ${version(1)} END,
           CASE WHEN k < 70 OR k = 91 OR k = 98 THEN ${version(1)}
                WHEN k = 99 THEN jsonb_build_object('original', jsonb_build_object('width', 1, 'height', 1, 'format', 'jpeg', 'bytes', 1))
                WHEN k BETWEEN 80 AND 90 OR k = 97 THEN ${version(0)} END,
           CASE WHEN k = 91 OR k = 97 THEN 'expired' WHEN k = 90 THEN 'http_404' END
      FROM (SELECT g, g % 100 AS k, CASE WHEN (g / 100) % 10 = 0 THEN 'fr' ELSE 'uk' END AS country,
                   'http://img.example.com/' || g || '.jpg' AS url
              FROM generate_series(1, ${rows}) g) s,
           LATERAL (SELECT CASE WHEN k < 75 OR k = 91 OR k >= 98 THEN 'live' WHEN k < 85 OR k = 92 OR k = 97 THEN 'push'
                                WHEN k < 88 OR k = 96 THEN 'thumbnail' ELSE 'download' END AS stage,
                           CASE WHEN k < 75 OR k = 91 OR k >= 98 THEN 'done' WHEN k IN (90, 92) THEN 'failed' ELSE 'waiting' END AS state,
                           CASE WHEN k BETWEEN 88 AND 90 OR k BETWEEN 93 AND 95 THEN '' ELSE 'bench' END AS host) st`.execute(db);

  for (const [i, f] of frontends.entries()) {
    await sql`INSERT INTO frontends (name, target, enabled) VALUES (${f.name}, ${`/srv/${f.name}`}, ${f.enabled ?? true})`.execute(db);
    if (f.kind === 'none') continue;
    // g: the row's number (its URL); the records' clock goes back one second per row, a millisecond per frontend.
    await sql`
      INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at, attempts, last_error, files_digest, updated_at)
      SELECT ${f.name}, li.country, li.image_hash,
             CASE WHEN failed_first THEN NULL WHEN failed_later THEN at - interval '1 day' ELSE at END,
             CASE WHEN failed_first OR failed_later THEN 1 ELSE 0 END,
             CASE WHEN failed_first THEN 'rsync exit 10 (error in socket I/O): Connection refused'
                  WHEN failed_later THEN 'rsync exit 23 (partial transfer): No space left on device' END,
             CASE WHEN failed_first OR predigest THEN NULL WHEN older THEN md5('an older version of ' || li.image_hash)
                  WHEN k BETWEEN 80 AND 84 AND g % 2 = 0 THEN md5(coalesce(li.image_data->'presets', 'null'::jsonb)::text)
                  ELSE md5(coalesce(coalesce(li.live_data, li.image_data)->'presets', 'null'::jsonb)::text) END,
             at
        FROM live_images li,
             LATERAL (SELECT substring(li.image_url FROM '([0-9]+)\\.jpg$')::int AS g) n,
             LATERAL (SELECT n.g % 100 AS k, now() - make_interval(secs => n.g + ${i}::float8 / 1000) AS at,
                             ${f.kind} = 'gaps' AND (n.g * 7) % 20 = 4 AS failed_first,
                             ${f.kind} = 'stale' AND n.g % 10 = 1 AS failed_later,
                             ${f.kind} = 'stale' AND n.g % 10 = 3 AS older,
                             ${f.kind} = 'stale' AND n.g % 50 = 5 AS predigest) c
       WHERE li.image_data IS NOT NULL
         AND NOT ((c.k BETWEEN 75 AND 79 OR c.k = 92) AND n.g % 2 = 1)
         AND NOT (${f.kind} = 'gaps' AND (n.g * 7) % 20 = 3)`.execute(db);
    // Records of rows deleted since (purged): they count for its last push and last error, never for the lag.
    await sql`
      INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at, last_error, files_digest, updated_at)
      SELECT ${f.name}, CASE WHEN g % 2 = 0 THEN 'fr' ELSE 'uk' END, md5('gone ' || g), now() - interval '3 days',
             CASE WHEN g % 3 = 0 THEN 'rsync exit 12' END, md5('gone ' || g), now() - make_interval(days => 2, secs => g + ${i}::float8 / 1000)
        FROM generate_series(1, greatest(1, ${rows} / 100)) g`.execute(db);
  }
  await sql`ANALYZE live_images`.execute(db);
  await sql`ANALYZE frontend_pushes`.execute(db);
}
