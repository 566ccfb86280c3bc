import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { nextStage, type WorkStage } from './stages.ts';

/** What a stage learned about a row it finished; left out: unchanged. */
export interface FinishedRow {
  id: string;
  imageData?: Record<string, unknown>;
  storeHost?: string;
  imageClass?: string;
}

/**
 * Moves rows this worker holds on to the next stage, in one statement, and
 * unlocks them. Rows whose lock the worker no longer holds (the manager gave
 * them to another worker) are left alone; the count says how many moved.
 * `image_class` is never overwritten on a row a person classified.
 */
export async function finishRows(db: Db, workerId: string, stage: WorkStage, rows: FinishedRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const next = nextStage(stage);
  const result = await sql`
    UPDATE live_images AS li
       SET stage = ${next},
           state = ${next === 'live' ? 'done' : 'waiting'},
           locked_by = NULL, locked_at = NULL,
           attempts = 0, next_attempt_at = now(),
           last_error = NULL, last_error_class = NULL,
           image_data = COALESCE(v.image_data, li.image_data),
           store_host = COALESCE(v.store_host, li.store_host),
           image_class = CASE WHEN li.human_classified THEN li.image_class ELSE COALESCE(v.image_class, li.image_class) END,
           updated_at = now()
      FROM unnest(${rows.map((r) => r.id)}::bigint[],
                  ${rows.map((r) => (r.imageData ? JSON.stringify(r.imageData) : null))}::jsonb[],
                  ${rows.map((r) => r.storeHost ?? null)}::text[],
                  ${rows.map((r) => r.imageClass ?? null)}::text[])
             AS v(id, image_data, store_host, image_class)
     WHERE li.id = v.id AND li.locked_by = ${workerId} AND li.stage = ${stage}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
