import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, unlockAndRelist } from './claimable-rows.ts';
import { patchedColumns, type RowPatch } from './row-patch.ts';
import { nextStage, type Stage, type WorkStage } from './stages.ts';

/** A row a stage finished, and what it learned about it (left out: unchanged). */
export interface FinishedRow {
  id: string;
  set?: RowPatch;
  /** Where the row goes; default the next stage. E.g. an unchanged refresh goes straight back to `live`. */
  toStage?: Stage;
}

/**
 * Moves rows this worker holds on to the next stage and unlocks them, writing
 * each row's patch and listing them for the next stage's claims, in one statement. Rows whose lock the worker no longer
 * holds (the manager gave them to another worker) are left alone; the count
 * says how many moved. `image_class` is never overwritten on a row a person
 * classified.
 */
export async function finishRows(db: Db, workerId: string, stage: WorkStage, rows: FinishedRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const next = nextStage(stage);
  const targets = rows.map((r) => r.toStage ?? next);
  const columns = patchedColumns(rows.map((r) => r.set)).filter((c) => c !== 'image_class');
  // jsonb_populate_record(li, patch) is the row with the patch's keys written over it, so rows in one
  // batch may patch different columns.
  const patched = columns.length
    ? sql`(${sql.join(columns.map((c) => sql.ref(c)))}) = (SELECT ${sql.join(columns.map((c) => sql.ref(`r.${c}`)))} FROM jsonb_populate_record(li, v.patch) AS r),`
    : sql``;
  return unlockAndRelist(db, sql`
    UPDATE live_images AS li
       SET ${patched}
           image_class = CASE WHEN li.human_classified OR NOT v.patch ? 'image_class' THEN li.image_class ELSE v.patch->>'image_class' END,
           stage = v.to_stage,
           state = CASE WHEN v.to_stage = 'live' THEN 'done' ELSE 'waiting' END,
           locked_by = NULL, locked_at = NULL,
           attempts = 0, next_attempt_at = now(),
           last_error = NULL, last_error_class = NULL, same_error_count = 0,
           updated_at = now()
      FROM unnest(${rows.map((r) => r.id)}::bigint[], ${rows.map((r) => JSON.stringify(r.set ?? {}))}::jsonb[], ${targets}::text[])
             AS v(id, patch, to_stage)
     WHERE li.id = v.id AND li.locked_by = ${workerId} AND li.stage = ${stage}
    RETURNING ${relistColumns('li')}`);
}
