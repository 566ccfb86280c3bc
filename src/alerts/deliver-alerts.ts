import { sql } from 'kysely';
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
 * Sends each alert once per dedupe window and at most maxPerHour an hour,
 * each kind in turn (fairOrder).
 * Each alert is claimed in alerts_sent before it is sent (one statement, so two
 * managers never both send it) and the claim is taken back when no channel
 * took it, so it goes out on a later run; a claim never marked delivered (its
 * manager died in between) is taken again after CLAIM_MINUTES.
 */
export async function deliverAlerts(db: Db, alerts: Alert[], policy: DeliveryPolicy, send: (alert: Alert) => Promise<boolean>): Promise<DeliveryReport> {
  const report: DeliveryReport = { sent: [], repeated: 0, held: [], undelivered: [] };
  const unique = [...new Map(alerts.map((a) => [a.key, a])).values()];
  if (unique.length === 0) return report;
  const dedupe = sql`now() - make_interval(secs => ${policy.dedupeMinutes * 60}::float8)`;
  const recent = await sql<{ n: string }>`SELECT count(*) AS n FROM alerts_sent WHERE sent_at > now() - interval '1 hour'`.execute(db);
  let budget = policy.maxPerHour - Number(recent.rows[0].n);
  const abandoned = sql`now() - make_interval(mins => ${CLAIM_MINUTES})`;
  const told = await sql<{ key: string }>`
    SELECT key FROM alerts_sent WHERE key = ANY(${unique.map((a) => a.key)}::text[]) AND sent_at > ${dedupe}
       AND (delivered_at IS NOT NULL OR sent_at > ${abandoned})`.execute(db);
  const repeated = new Set(told.rows.map((r) => r.key));
  report.repeated = repeated.size;
  for (const alert of fairOrder(unique.filter((a) => !repeated.has(a.key)))) {
    if (budget <= 0) {
      report.held.push(alert);
      continue;
    }
    const claim = await sql<{ key: string }>`
      INSERT INTO alerts_sent AS s (key, kind, subject) VALUES (${alert.key}, ${alert.kind}, ${alert.subject})
      ON CONFLICT (key) DO UPDATE SET sent_at = now(), subject = EXCLUDED.subject, delivered_at = NULL
        WHERE s.sent_at <= ${dedupe} OR (s.delivered_at IS NULL AND s.sent_at <= ${abandoned})
      RETURNING key`.execute(db);
    if (claim.rows.length === 0) {
      // Another manager claimed it meanwhile.
      report.repeated++;
      continue;
    }
    budget--;
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
