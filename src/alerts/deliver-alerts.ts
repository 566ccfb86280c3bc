import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { Alert } from './alert.ts';

export interface DeliveryPolicy {
  dedupeMinutes: number;
  maxPerHour: number;
}

export interface DeliveryReport {
  sent: Alert[];
  /** Sent before within dedupeMinutes: not repeated. */
  repeated: number;
  /** Over maxPerHour: left for a later run. */
  held: Alert[];
  /** Every channel failed: left for a later run. */
  undelivered: Alert[];
}

/**
 * Pure: the order alerts spend the hourly cap in, taking one of each kind in
 * turn, so that a flood of one kind (a worker dying every two minutes, many
 * datasources disabled together) cannot hold back the only alert of another
 * hour after hour, until it is too old to be told at all.
 */
export function fairOrder(alerts: Alert[]): Alert[] {
  const byKind = new Map<string, Alert[]>();
  for (const alert of alerts) byKind.set(alert.kind, [...(byKind.get(alert.kind) ?? []), alert]);
  const queues = [...byKind.values()];
  const out: Alert[] = [];
  for (let i = 0; out.length < alerts.length; i++) for (const queue of queues) if (i < queue.length) out.push(queue[i]);
  return out;
}

/**
 * A claim not delivered within this long is a manager that died between its claim and the send (a send
 * takes at most a mail timeout and the webhook's retries, well under a minute): the alert is sent again.
 */
const CLAIM_MINUTES = 5;

/**
 * Advisory-lock key (two-int form, namespace 'alrt') under which a manager counts the hour's claims and
 * claims one more: the count and the claim are one step across processes and hosts.
 */
const CAP_LOCK = sql`${0x616c7274}::int, 0`;

type Claim = 'claimed' | 'taken' | 'capped';

/**
 * Claims one alert in alerts_sent if the hour's claims are under maxPerHour. Counted and claimed in one
 * transaction holding CAP_LOCK: two managers (two hosts) running the check at the same moment each
 * counted the hour's claims before either claimed, and each sent maxPerHour. Held only for the count and
 * the insert, never for the send.
 */
async function claimUnderCap(db: Db, alert: Alert, policy: DeliveryPolicy, dedupe: RawBuilder<unknown>, abandoned: RawBuilder<unknown>): Promise<Claim> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${CAP_LOCK})`.execute(trx);
    const recent = await sql<{ n: number }>`SELECT count(*)::int AS n FROM alerts_sent WHERE sent_at > now() - interval '1 hour'`.execute(trx);
    if (recent.rows[0].n >= policy.maxPerHour) return 'capped';
    // delivered_at named: a row without it (its default, now()) is an older release's manager's, which claims and sends in one.
    const claim = await sql<{ key: string }>`
      INSERT INTO alerts_sent AS s (key, kind, subject, delivered_at) VALUES (${alert.key}, ${alert.kind}, ${alert.subject}, NULL)
      ON CONFLICT (key) DO UPDATE SET sent_at = now(), subject = EXCLUDED.subject, delivered_at = NULL
        WHERE s.sent_at <= ${dedupe} OR (s.delivered_at IS NULL AND s.sent_at <= ${abandoned})
      RETURNING key`.execute(trx);
    return claim.rows.length === 0 ? 'taken' : 'claimed';
  });
}

/**
 * Sends each alert once per dedupe window and at most maxPerHour an hour
 * (across all managers), each kind in turn (fairOrder).
 * Each alert is claimed in alerts_sent before it is sent (claimUnderCap, so
 * two managers never both send it nor together exceed the cap) and the claim is taken back when no channel
 * took it, so it goes out on a later run; a claim never marked delivered (its
 * manager died in between) is taken again after CLAIM_MINUTES.
 */
export async function deliverAlerts(db: Db, alerts: Alert[], policy: DeliveryPolicy, send: (alert: Alert) => Promise<boolean>): Promise<DeliveryReport> {
  const report: DeliveryReport = { sent: [], repeated: 0, held: [], undelivered: [] };
  const unique = [...new Map(alerts.map((a) => [a.key, a])).values()];
  if (unique.length === 0) return report;
  const dedupe = sql`now() - make_interval(secs => ${policy.dedupeMinutes * 60}::float8)`;
  const abandoned = sql`now() - make_interval(mins => ${CLAIM_MINUTES})`;
  const told = await sql<{ key: string }>`
    SELECT key FROM alerts_sent WHERE key = ANY(${unique.map((a) => a.key)}::text[]) AND sent_at > ${dedupe}
       AND (delivered_at IS NOT NULL OR sent_at > ${abandoned})`.execute(db);
  const repeated = new Set(told.rows.map((r) => r.key));
  report.repeated = repeated.size;
  // Also at most maxPerHour tries a run: an undelivered claim is taken back (and no longer counted), and a
  // run whose channels all fail would otherwise wait out their timeouts for every alert found.
  let tries = 0;
  let capped = false;
  for (const alert of fairOrder(unique.filter((a) => !repeated.has(a.key)))) {
    const claim = capped || tries >= policy.maxPerHour ? 'capped' : await claimUnderCap(db, alert, policy, dedupe, abandoned);
    if (claim === 'capped') {
      capped = true;
      report.held.push(alert);
      continue;
    }
    if (claim === 'taken') {
      // Another manager claimed it meanwhile.
      report.repeated++;
      continue;
    }
    tries++;
    if (await send(alert)) {
      report.sent.push(alert);
      await sql`UPDATE alerts_sent SET delivered_at = now() WHERE key = ${alert.key}`.execute(db);
      // The trouble it ended is set aside (kept for the hourly count): its key is free for the next time.
      if (alert.recovers) await sql`UPDATE alerts_sent SET key = key || ':ended:' || ${new Date().toISOString()} WHERE key = ${alert.recovers}`.execute(db);
    } else {
      await sql`DELETE FROM alerts_sent WHERE key = ${alert.key}`.execute(db);
      report.undelivered.push(alert);
    }
  }
  return report;
}
