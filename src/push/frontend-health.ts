import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { FrontendTransfer } from './push-to-frontends.ts';

/** rsync failures that say the frontend itself is unwell (not our store). */
const DOWN_CLASSES = new Set(['frontend_down', 'frontend_timeout', 'frontend_disk_full', 'rsync_error']);

/** Pure: which frontends are down now (with why) and which answered, from a chunk's transfers. */
export function frontendHealthOf(transfers: FrontendTransfer[]): { down: Array<{ name: string; reason: string }>; up: string[] } {
  const down: Array<{ name: string; reason: string }> = [];
  const up: string[] = [];
  for (const t of transfers) {
    if (t.outcome.ok) up.push(t.frontend);
    else if (DOWN_CLASSES.has(t.outcome.errorClass)) down.push({ name: t.frontend, reason: `${t.outcome.errorClass}: ${t.outcome.message}` });
  }
  return { down, up };
}

/**
 * Records frontends.down_since (kept from the first failure), down_reason and
 * down_host (this pushing host) for frontends that failed, and clears them for
 * those that answered: what the manager's "frontend down" alert reads. Only
 * that frontend's pushes wait. A frontend may refuse one pushing host and not
 * another (`hosts allow`, authorized_keys, a password file set up on one host
 * only): so only the host that marked it down clears the mark (or any host, for
 * a mark without one); another host's success clearing it kept the alert from
 * ever firing while the refused host's rows waited.
 */
export async function recordFrontendHealth(db: Db, transfers: FrontendTransfer[], host: string): Promise<void> {
  const { down, up } = frontendHealthOf(transfers);
  for (const d of down) {
    await db
      .updateTable('frontends')
      .set({ down_since: sql`coalesce(down_since, now())`, down_reason: d.reason.slice(0, 2000), down_host: host })
      .where('name', '=', d.name)
      .execute();
  }
  if (up.length)
    await db
      .updateTable('frontends')
      .set({ down_since: null, down_reason: null, down_host: null })
      .where('name', 'in', up)
      .where('down_since', 'is not', null)
      .where((eb) => eb.or([eb('down_host', 'is', null), eb('down_host', '=', host)]))
      .execute();
}
