import type { Db } from '../db/connect.ts';

/** `left_rows`: rows a stopped worker still held, released by stuck_jobs (not a death). `upkeep`: a run of lis_cron_frontend (detail starts `ok:` or `failed:`), for the alerts. */
export type CheckName = 'stuck_jobs' | 'left_rows' | 'bad_retry_jobs' | 'bad_datasources' | 'host_gone' | 'unlisted_rows' | 'missed_origin_rows' | 'upkeep';

/** Records what the manager did, for the reports and for checking its figures afterwards. */
export async function recordEvent(
  db: Db,
  event: { check: CheckName; country?: string | null; subject?: string | null; rows: number; detail: string },
): Promise<void> {
  await db
    .insertInto('manager_events')
    .values({ check_name: event.check, country: event.country ?? null, subject: event.subject ?? null, rows: event.rows, detail: event.detail })
    .execute();
}
