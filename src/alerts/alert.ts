import { sql } from 'kysely';

/** Kinds of alert, each with what it is about in its key (see README "Alerts"). */
export const ALERT_KINDS = [
  'datasource_disabled',
  'store_paused',
  'frontend_down',
  's3_refused',
  's3_unavailable',
  'network_down',
  'worker_died',
  'upkeep_failed',
  'error_rate',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** One thing an operator must be told. */
export interface Alert {
  kind: AlertKind;
  /** What it is about, for de-duplication: the same key is sent once per alerts.dedupeMinutes. */
  key: string;
  /** One line: the mail's subject. */
  subject: string;
  /** What happened, with the figures. */
  detail: string;
  /** What the operator does about it. */
  action: string;
  /** For a "recovered" notice: the key of the trouble that ended, set aside once the notice went out. */
  recovers?: string;
}

/** Events older than this are not alerted any more (a manager that was down a day does not mail the past). */
export const LOOKBACK = sql`now() - interval '24 hours'`;
