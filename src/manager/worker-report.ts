import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

export interface WorkerReportRow {
  id: string;
  component: string;
  host: string;
  pid: number;
  country: string | null;
  stage: string | null;
  /** The release (package version) it runs; null for a worker of a release that did not record it. */
  release: string | null;
  startedAt: Date;
  heartbeatAt: Date;
  silentSeconds: number;
  status: 'alive' | 'silent' | 'stopped';
  holding: number;
  /** Rows this worker finished in the last hour. */
  doneLastHour: number;
  /** Failed tries in the last hour, not rows: a row retried after a failure counts once per failure. */
  failedLastHour: number;
}

/** Every worker running, or stopped within the last day, with its last hour's figures. */
export async function workerReport(db: Db, staleSeconds: number, country?: string): Promise<WorkerReportRow[]> {
  const { rows } = await sql<{
    id: string;
    component: string;
    host: string;
    pid: number;
    country: string | null;
    stage: string | null;
    release: string | null;
    started_at: Date;
    heartbeat_at: Date;
    stopped_at: Date | null;
    holding: number;
    silent: number;
    done: string;
    failed: string;
  }>`
    SELECT w.id, w.component, w.host, w.pid, w.country, w.stage, w.release, w.started_at, w.heartbeat_at, w.stopped_at, w.holding,
           extract(epoch FROM now() - w.heartbeat_at)::float8 AS silent,
           coalesce(sum(m.done), 0) AS done, coalesce(sum(m.failed), 0) AS failed
      FROM workers w
      LEFT JOIN worker_minutes m ON m.worker_id = w.id AND m.minute > now() - interval '1 hour'
     WHERE (w.stopped_at IS NULL OR w.stopped_at > now() - interval '1 day')
       AND ${country === undefined ? sql`true` : sql`w.country = ${country}`}
     GROUP BY w.id
     ORDER BY w.component, w.host, w.pid`.execute(db);
  return rows.map((r) => ({
    id: r.id,
    component: r.component,
    host: r.host,
    pid: r.pid,
    country: r.country,
    stage: r.stage,
    release: r.release,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
    silentSeconds: Math.round(r.silent),
    status: r.stopped_at ? 'stopped' : r.silent >= staleSeconds ? 'silent' : 'alive',
    // A stopped worker holds none, unless the database would not take its rows back as it stopped: those wait for stuck_jobs.
    holding: r.holding,
    doneLastHour: Number(r.done),
    failedLastHour: Number(r.failed),
  }));
}

/** Pure: rows as an aligned text table. */
export function formatTable(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Pure: `3m ago`, `2h ago`. */
export function ago(seconds: number): string {
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}
