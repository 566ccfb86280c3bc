import type { Db } from '../db/connect.ts';
import { deleteMissedOriginRows } from '../queue/origin-rows.ts';
import { recordEvent } from './manager-events.ts';

/**
 * The `missed_origin_rows` check: deletes the rows lis_imaged made for origin
 * keys the origin turned out not to have, when the request that made one could
 * not delete it itself (a lis_downloadd claimed the row first and failed it
 * after the request gave up, or lis_imaged stopped or died meanwhile). The
 * rows carry their mark (UNSEEN, src/queue/enqueue-rows.ts), so this works from
 * the table alone: whichever host's lis_imaged made them, across restarts. A
 * row any listing named is never touched. Returns how many were deleted.
 */
export async function settleMissedOriginRows(db: Db, country?: string): Promise<number> {
  const rows = await deleteMissedOriginRows(db, country);
  if (rows > 0) await recordEvent(db, { check: 'missed_origin_rows', country, rows, detail: `${rows} rows of origin keys the origin lacks deleted` });
  return rows;
}
