import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { sourceFaultClasses } from '../failure/failure-reasons.ts';
import { FRONTEND_ERROR_CLASSES } from '../push/frontend-registry.ts';
import { giveUpRows } from '../queue/give-up-rows.ts';
import { retryFailedRows } from '../queue/retry-rows.ts';
import { optionalFilter } from '../queue/move-rows.ts';
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
  thumbnailsMissing: number;
}

/**
 * Push failures that pushing again cannot mend: a thumbnail not in the store, or image_data listing no
 * files or bad paths. Our fault (given back uncharged), but the pusher would retry them every
 * queue.oursRetrySeconds for ever; the thumbnail stage makes the files (and the record) again.
 */
export const REMAKE_THUMBNAIL_CLASSES = ['thumbnail_missing', 'no_thumbnails', 'bad_image_data'] as const;

// (state = 'waiting' OR state = 'failed'), not IN: the planner matches each arm to its partial index
// (live_images_waiting, live_images_failed), IN to neither, and read the whole table every 5 min.

/** Push rows (waiting or failed) whose thumbnails must be made again. */
export function thumbnailsMissingRows(country?: string) {
  return sql`li.stage = 'push' AND (li.state = 'waiting' OR li.state = 'failed') AND li.locked_by IS NULL
             AND li.last_error_class = ANY(${[...REMAKE_THUMBNAIL_CLASSES]}::text[]) AND ${optionalFilter('country', country)}`;
}

/** Thumbnail rows (waiting or failed) whose original vanished from the store. */
export function originalMissingRows(country?: string) {
  return sql`li.stage = 'thumbnail' AND (li.state = 'waiting' OR li.state = 'failed') AND li.locked_by IS NULL
             AND li.last_error_class = 'original_missing' AND ${optionalFilter('country', country)}`;
}

/**
 * Parks as failed the waiting rows that have used up their attempts (say,
 * after queue.maxAttempts was lowered) or that failed `sameReasonLimit`
 * times in a row with the same reason; sends rows whose original has
 * vanished from the store back to download, since thumbnailing cannot help;
 * and push rows whose thumbnails are missing or unlisted back to thumbnail.
 */
export async function parkBadRetryJobs(db: Db, options: { maxAttempts: number; sameReasonLimit: number; country?: string }): Promise<BadRetryResult> {
  // First: such a row is to be made again, not parked.
  const thumbnailsMissing = await sendBackRows(db, {
    where: thumbnailsMissingRows(options.country),
    to: 'thumbnail',
    reason: sql`li.last_error`,
    errorClass: sql`li.last_error_class`,
  });
  const except = FRONTEND_ERROR_CLASSES;
  // A row last given back for our own fault is not parked now, under our reason (out of attempts or on a
  // streak): `lis retry --reason <the source's class>` would miss it. Its source is judged on its next try,
  // where failRows fails a row out of attempts itself.
  const outOfAttempts = await giveUpRows(db, {
    country: options.country,
    minAttempts: options.maxAttempts,
    exceptErrorClasses: except,
    onlyErrorClasses: sourceFaultClasses(),
  });
  // A streak is the source's failing again and again (same_error_count of streak_class, which deferRows
  // leaves alone): the same failure again parks it, another starts a new streak.
  const sameReason = await giveUpRows(db, {
    country: options.country,
    minSameErrors: options.sameReasonLimit,
    exceptErrorClasses: except,
    onlyErrorClasses: sourceFaultClasses(),
  });
  const originalMissing = await sendBackRows(db, {
    where: originalMissingRows(options.country),
    to: 'download',
    reason: sql`li.last_error`,
    errorClass: sql`li.last_error_class`,
  });
  const result = { outOfAttempts, sameReason, originalMissing, thumbnailsMissing };
  const rows = outOfAttempts + sameReason + originalMissing + thumbnailsMissing;
  if (rows > 0) await recordEvent(db, { check: 'bad_retry_jobs', country: options.country, rows, detail: describeBadRetry(result) });
  return result;
}

/** One line for the log and the manager's events. */
export function describeBadRetry(r: BadRetryResult): string {
  return (
    `${r.outOfAttempts} out of attempts and ${r.sameReason} failing the same way parked as failed; ` +
    `${r.originalMissing} with a lost original sent back to download; ${r.thumbnailsMissing} with thumbnails missing from the store sent back to thumbnail`
  );
}

/** `lis retry`: failed rows back to waiting, attempts reset. Returns how many. */
export async function retryFailed(db: Db, filter: { country: string; reason?: string; datasourceId?: number; stage?: string }): Promise<number> {
  return retryFailedRows(db, filter);
}
