import type { RowResult } from '../daemon/run-daemon.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { thumbnailFilesOf, type ImageData } from '../store/image-data.ts';

/** A row with the files every frontend must have, relative to a thumbnail root. */
export interface PushRow {
  id: string;
  country: string;
  image_hash: string;
  attempts: number;
  files: string[];
}

/** How one frontend's rsync went for one row. */
export type FrontendRowOutcome =
  | { ok: true }
  | { ok: false; errorClass: string; message: string }
  /** Its files vanished from the store during the transfer (rsync exit 24): not the frontend's fault. */
  | { ok: false; errorClass: 'thumbnail_missing'; message: string; vanished: true };

/** `frontend` + tab + row id: who has what. */
export const pushKey = (frontend: string, rowId: string) => `${frontend}\t${rowId}`;

/** A relative path inside a thumbnail root; anything else in image_data is a bug upstream. */
const RELATIVE_FILE = /^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$))[^\0\n\r]+$/;

/**
 * Pure: the files of each claimed row, or why it cannot be pushed at all
 * (`no_thumbnails`, `bad_image_data`: pushing again cannot help; the row is given back uncharged and
 * lis_managerd's bad_retry_jobs sends it back to thumbnail, see REMAKE_THUMBNAIL_CLASSES).
 */
export function prepareRows(rows: ClaimedRow[], country: string): { rows: PushRow[]; rejected: RowResult[] } {
  const ready: PushRow[] = [];
  const rejected: RowResult[] = [];
  for (const row of rows) {
    const files = thumbnailFilesOf(row.image_data as ImageData | null);
    const fail = (errorClass: string, reason: string) =>
      rejected.push({ ok: false, failure: { id: row.id, attempts: row.attempts, errorClass, reason, retryable: false } });
    if (files.length === 0) fail('no_thumbnails', 'image_data lists no thumbnail files (was it thumbnailed?)');
    else if (files.some((f) => !RELATIVE_FILE.test(f)))
      fail(
        'bad_image_data',
        `image_data holds a path that is not relative to the thumbnail root: ${JSON.stringify(files.find((f) => !RELATIVE_FILE.test(f)))}`,
      );
    else if (files.some((f) => !f.startsWith(`${country}/`)))
      fail('bad_image_data', `image_data holds a file outside ${country}/: ${JSON.stringify(files.find((f) => !f.startsWith(`${country}/`)))}`);
    else ready.push({ id: row.id, country: row.country, image_hash: row.image_hash, attempts: row.attempts, files: [...new Set(files)] });
  }
  return { rows: ready, rejected };
}

/** Pure: for each frontend, the rows it does not have yet (one rsync each; none when it has them all). */
export function planPush(rows: PushRow[], frontends: string[], have: Set<string>): Map<string, PushRow[]> {
  const plan = new Map<string, PushRow[]>();
  for (const frontend of frontends) {
    const missing = rows.filter((r) => !have.has(pushKey(frontend, r.id)));
    if (missing.length) plan.set(frontend, missing);
  }
  return plan;
}

export interface SettleOptions {
  /** Kept for callers; attempts are no longer capped here (see decideRowResults). */
  maxAttempts?: number;
}

/**
 * Pure: each row's result once the chunk's rsyncs are done. A row is live
 * when every enabled frontend has it (it had it before, or got it now).
 * Otherwise it waits for a retry that pushes only to the frontends it lacks.
 *
 * Attempts: a frontend that is down or failing is our fault (an `ours` class
 * in src/failure/failure-reasons.ts), so the runner gives such rows back
 * without charging them, to be pushed again after queue.oursRetrySeconds,
 * however long the frontend stays down.
 */
export function decideRowResults(rows: PushRow[], frontends: string[], outcomes: Map<string, FrontendRowOutcome>, _options: SettleOptions = {}): RowResult[] {
  return rows.map((row): RowResult => {
    const failures: Array<{ frontend: string; errorClass: string; message: string }> = [];
    const pushed: string[] = [];
    let vanished: string | null = null;
    for (const frontend of frontends) {
      const outcome = outcomes.get(pushKey(frontend, row.id)) ?? { ok: true };
      if (outcome.ok) pushed.push(frontend);
      else if ('vanished' in outcome) vanished = outcome.message;
      else failures.push({ frontend, ...outcome });
    }
    if (vanished !== null) {
      return { ok: false, failure: { id: row.id, attempts: row.attempts, errorClass: 'thumbnail_missing', reason: vanished, retryable: true } };
    }
    if (failures.length === 0) return { ok: true, row: { id: row.id } };
    const reason = `not on ${failures.map((f) => `${f.frontend} (${f.message})`).join('; ')}${pushed.length ? `; on ${pushed.join(', ')}` : ''}`;
    return {
      ok: false,
      failure: { id: row.id, attempts: row.attempts, errorClass: failures[0].errorClass, reason, retryable: true },
    };
  });
}
