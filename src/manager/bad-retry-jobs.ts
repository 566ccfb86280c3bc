import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { FRONTEND_ERROR_CLASSES } from '../push/frontend-registry.ts';
import { giveUpRows } from '../queue/give-up-rows.ts';
import { retryFailedRows } from '../queue/retry-rows.ts';
import { sendBackRows } from '../queue/send-back-rows.ts';
import { recordEvent } from './manager-events.ts';

/**
 * A frontend's outage is not the row's fault: the pusher retries such rows
 * (with capped backoff) until the frontend is back, however many attempts
 * that takes, so they are never parked here.
 */
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
  const except = FRONTEND_ERROR_CLASSES;
  const outOfAttempts = await giveUpRows(db, { country: options.country, minAttempts: options.maxAttempts, exceptErrorClasses: except });
  const sameReason = await giveUpRows(db, { country: options.country, minSameErrors: options.sameReasonLimit, exceptErrorClasses: except });
  const originalMissing = await sendBackRows(db, {
    where: sql`li.stage = 'thumbnail' AND li.state IN ('waiting', 'failed') AND li.locked_by IS NULL AND li.last_error_class = 'original_missing'
               AND ${options.country === undefined ? sql`true` : sql`li.country = ${options.country}`}`,
    to: 'download',
    reason: sql`li.last_error`,
    errorClass: sql`li.last_error_class`,
  });
  const result = {
    outOfAttempts,
    sameReason,
    originalMissing,
  };
  if (result.outOfAttempts + result.sameReason + result.originalMissing > 0) {
    await recordEvent(db, {
      check: 'bad_retry_jobs',
      country: options.country,
      rows: result.outOfAttempts + result.sameReason + result.originalMissing,
      detail: `failed ${result.outOfAttempts} out of attempts, ${result.sameReason} failing the same way; ${result.originalMissing} with a lost original sent back to download`,
    });
  }
  return result;
}

/** `lis retry`: failed rows back to waiting, attempts reset. Returns how many. */
export async function retryFailed(db: Db, filter: { country: string; reason?: string; datasourceId?: number; stage?: string }): Promise<number> {
  return retryFailedRows(db, filter);
}
