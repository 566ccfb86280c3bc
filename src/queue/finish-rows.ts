import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';
import { PATCH_COLUMN_TYPES, patchedColumns, type RowPatch } from './row-patch.ts';
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
 * each row's patch and listing the rows for the next stage's claims, in one
 * statement; a row reaching `live` serves what it was worked on (`live_data`).
 * Rows whose lock the worker no longer holds (the manager gave them
 * to another worker) are left alone; the count says how many moved.
 * `image_class` is never overwritten on a row a person classified.
 */
export async function finishRows(db: Db, workerId: string, stage: WorkStage, rows: FinishedRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const next = nextStage(stage);
  const columns = patchedColumns(rows.map((r) => r.set));
  // One typed array per patched column, beside the ids; where only some rows of the batch patch a
  // column, a mask says which, and the others keep their value.
  const arrays = [sql`${rows.map((r) => r.id)}::bigint[]`, sql`${rows.map((r) => r.toStage ?? next)}::text[]`];
  const names = [sql`id`, sql`to_stage`];
  const sets = [];
  let imageData = sql`li.image_data`;
  for (const column of columns) {
    const has = rows.map((r) => r.set?.[column] !== undefined);
    const values = rows.map((r) => patchValue(r.set?.[column]));
    arrays.push(sql`${values}::${sql.raw(PATCH_COLUMN_TYPES[column])}[]`);
    names.push(sql.ref(column));
    const value = sql.ref(`v.${column}`);
    const keep = sql.ref(`li.${column}`);
    let patched = value;
    if (!has.every(Boolean)) {
      arrays.push(sql`${has}::boolean[]`);
      names.push(sql.ref(`has_${column}`));
      patched = sql`CASE WHEN ${sql.ref(`v.has_${column}`)} THEN ${value} ELSE ${keep} END`;
    }
    // A person's classification is never overwritten.
    if (column === 'image_class') patched = sql`CASE WHEN li.human_classified THEN li.image_class ELSE ${patched} END`;
    if (column === 'image_data') imageData = patched;
    sets.push(sql`${sql.ref(column)} = ${patched},`);
  }
  // Reaching live, the version worked on becomes the one served (a rework's old files are orphans now).
  // The lock step carries the batch's values (`v`), so the UPDATE joins one row source: a prepared
  // statement's generic plan, guessing one row per side, turned a second join into 500 x 500 comparisons.
  return runTransition(db, {
    mayBeListed: false,
    candidates: sql`SELECT v.* FROM unnest(${sql.join(arrays)}) AS v(${sql.join(names)})
                      JOIN live_images li ON li.id = v.id
                     WHERE li.locked_by = ${workerId} AND li.stage = ${stage}`,
    update: sql`
    UPDATE live_images AS li
       SET ${sql.join(sets, sql` `)}
           live_data = CASE WHEN v.to_stage = 'live' THEN ${imageData} ELSE li.live_data END,
           stage = v.to_stage,
           state = CASE WHEN v.to_stage = 'live' THEN 'done' ELSE 'waiting' END,
           locked_by = NULL, locked_at = NULL,
           attempts = 0, next_attempt_at = now(),
           last_error = NULL, last_error_class = NULL, same_error_count = 0, streak_class = NULL,
           updated_at = now()
      FROM locked AS v
     WHERE li.id = v.id
    RETURNING ${relistColumns('li')}`,
  });
}

/** A patch value as a pg array element: JSON for image_data, ISO 8601 for a Date, as given for the rest. */
function patchValue(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  return value !== null && typeof value === 'object' ? JSON.stringify(value) : (value ?? null);
}
