import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { FRONTEND_ERROR_CLASSES } from '../push/frontend-registry.ts';
import { recordEvent } from './manager-events.ts';

/**
 * A frontend's outage is not the row's fault: the pusher retries such rows
 * (with capped backoff) until the frontend is back, however many attempts
 * that takes, so they are never parked here.
 */
const notTheRowsFault = sql`(last_error_class IS NULL OR last_error_class <> ALL(${[...FRONTEND_ERROR_CLASSES]}::text[]))`;

export interface BadRetryResult {
  outOfAttempts: number;
  sameReason: number;
  originalMissing: number;
}

/**
 * Parks as failed the waiting rows that have used up their attempts (say,
 * after queue.maxAttempts was lowered) or that failed `sameReasonLimit`
 * times in a row with the same reason; and sends rows whose original has
 * vanished from the store back to download, since thumbnailing cannot help.
 */
export async function parkBadRetryJobs(db: Db, options: { maxAttempts: number; sameReasonLimit: number; country?: string }): Promise<BadRetryResult> {
  const inCountry = options.country === undefined ? sql`true` : sql`country = ${options.country}`;
  const outOfAttempts = await sql`
    UPDATE live_images SET state = 'failed', updated_at = now(),
           last_error = 'out of attempts (' || attempts || '): ' || coalesce(last_error, 'no reason recorded')
     WHERE state = 'waiting' AND locked_by IS NULL AND attempts >= ${options.maxAttempts} AND stage <> 'live' AND ${notTheRowsFault} AND ${inCountry}`.execute(db);
  const sameReason = await sql`
    UPDATE live_images SET state = 'failed', updated_at = now(),
           last_error = 'failed ' || same_error_count || ' times in a row: ' || coalesce(last_error, '')
     WHERE state = 'waiting' AND locked_by IS NULL AND same_error_count >= ${options.sameReasonLimit} AND stage <> 'live' AND ${notTheRowsFault} AND ${inCountry}`.execute(db);
  const originalMissing = await sql`
    UPDATE live_images SET stage = 'download', state = 'waiting', store_host = '', attempts = 0, same_error_count = 0,
           next_attempt_at = now(), updated_at = now()
     WHERE stage = 'thumbnail' AND state IN ('waiting', 'failed') AND locked_by IS NULL
       AND last_error_class = 'original_missing' AND ${inCountry}`.execute(db);
  const result = {
    outOfAttempts: Number(outOfAttempts.numAffectedRows ?? 0),
    sameReason: Number(sameReason.numAffectedRows ?? 0),
    originalMissing: Number(originalMissing.numAffectedRows ?? 0),
  };
  if (result.outOfAttempts + result.sameReason + result.originalMissing > 0) {
    await recordEvent(db, {
      check: 'bad_retry_jobs', country: options.country, rows: result.outOfAttempts + result.sameReason + result.originalMissing,
      detail: `failed ${result.outOfAttempts} out of attempts, ${result.sameReason} failing the same way; ${result.originalMissing} with a lost original sent back to download`,
    });
  }
  return result;
}

/** `lis retry`: failed rows back to waiting, attempts reset. Returns how many. */
export async function retryFailed(db: Db, filter: { country: string; reason?: string; datasourceId?: number; stage?: string }): Promise<number> {
  const result = await sql`
    UPDATE live_images SET state = 'waiting', attempts = 0, same_error_count = 0, next_attempt_at = now(), updated_at = now()
     WHERE state = 'failed' AND country = ${filter.country}
       AND ${filter.reason === undefined ? sql`true` : sql`last_error_class = ${filter.reason}`}
       AND ${filter.datasourceId === undefined ? sql`true` : sql`datasource_id = ${filter.datasourceId}`}
       AND ${filter.stage === undefined ? sql`true` : sql`stage = ${filter.stage}`}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
