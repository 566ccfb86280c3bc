import { formatTable } from '../manager/worker-report.ts';
import type { MetricsReport } from './collect-report.ts';

const mb = (bytes: number | null) => (bytes === null ? 'n/a' : `${(bytes / 1048576).toFixed(1)} MB`);

/** Pure: the report as an operator reads it on a terminal. */
export function formatReport(r: MetricsReport): string {
  const out: string[] = [];
  out.push(`ImageSys metrics${r.country ? ` for ${r.country.toUpperCase()}` : ''} at ${r.at}`, '');
  out.push('Rows by country, stage and state');
  out.push(
    r.rows.length
      ? formatTable(
          ['country', 'stage', 'state', 'rows'],
          r.rows.map((x) => [x.country, x.stage, x.state, x.rows]),
        )
      : '  (no rows)',
    '',
  );
  out.push('Queue (waiting rows)');
  out.push(
    r.queue.length
      ? formatTable(
          ['country', 'stage', 'due now', 'retry later', 'held', 'oldest due'],
          r.queue.map((q) => [q.country, q.stage, q.due, q.later, q.held, `${q.oldestSeconds}s`]),
        )
      : '  (empty)',
    '',
  );
  out.push('Throughput');
  const components = [...new Set([...r.throughput.lastHour, ...r.throughput.lastDay].map((t) => t.component))].sort();
  out.push(
    components.length
      ? formatTable(
          ['component', 'done/h', 'failed/h', 'done/day', 'failed/day'],
          components.map((c) => {
            const h = r.throughput.lastHour.find((t) => t.component === c);
            const d = r.throughput.lastDay.find((t) => t.component === c);
            return [c, h?.done ?? 0, h?.failed ?? 0, d?.done ?? 0, d?.failed ?? 0];
          }),
        )
      : '  (no work in the last day)',
    '',
  );
  out.push('Datasources (last 24h; tries, not rows: a row retried counts each time)');
  out.push(
    r.datasources.length
      ? formatTable(
          ['country', 'datasource', 'enabled', 'tries', 'source failed', 'rate', 'our faults', 'top reasons (tries)'],
          r.datasources.map((d) => [
            d.country,
            d.datasourceId,
            d.enabled ? 'yes' : 'NO',
            d.tries,
            d.failed,
            `${(d.rate * 100).toFixed(1)}%`,
            d.ours,
            d.reasons.map((x) => `${x.reason} ${x.tries}`).join(', ') || '-',
          ]),
        )
      : '  (no work in the last day)',
    '',
  );
  out.push('Frontends (push lag: rows they lack)');
  out.push(
    r.frontends.length
      ? formatTable(
          ['frontend', 'enabled', 'live lacking', 'push lacking', 'last push', 'last error'],
          r.frontends.map((f) => [
            f.frontend,
            f.enabled ? 'yes' : 'no',
            f.live,
            f.push,
            f.lastPushedAt ? new Date(f.lastPushedAt).toISOString().slice(0, 19) : '-',
            f.lastError ?? '-',
          ]),
        )
      : '  (no frontends)',
    '',
  );
  out.push(`Stores on this host: originals ${mb(r.disk.originals)}, thumbnails ${mb(r.disk.thumbnails)}`);
  return out.join('\n');
}
