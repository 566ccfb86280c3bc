import type { HeldRows } from '../queue/held-rows.ts';
import type { DisabledDatasource } from '../queue/disabled-datasources.ts';
import type { RetryWaits } from '../queue/retry-waits.ts';

/** Pure: `12,500 rows done (2,480/s), 3 failed` for the terminal's status line. */
export function formatProgress(done: number, failed: number, elapsedMs: number, noun = 'rows done'): string {
  const rate = elapsedMs > 0 ? Math.round((done / elapsedMs) * 1000) : 0;
  return `${done.toLocaleString('en-GB')} ${noun} (${rate.toLocaleString('en-GB')}/s), ${failed.toLocaleString('en-GB')} failed`;
}

/**
 * A status line rewritten in place on a terminal, and nothing at all when
 * the output is a file or a pipe (services, tests). Whatever else is written
 * to its stream meanwhile (the log's screen lines, lis enqueue's bad lines)
 * first clears it: written after it, a line read `0 rows done (0/s), 0
 * failedDec 01 04:56:58 INFO ...`. It is drawn again at its next tick.
 */
export class ProgressLine {
  private timer: NodeJS.Timeout | null = null;
  private readonly started = Date.now();
  /** Drawn, and not cleared since: the next foreign write clears it first. */
  private onScreen = false;
  private drawn = false;
  private restoreWrite: (() => void) | null = null;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly read: () => { done: number; failed: number },
    private readonly noun?: string,
    private readonly everyMs = 1000,
  ) {}

  start(): this {
    if (!this.stream.isTTY) return this;
    const stream = this.stream;
    // Put back as it was at stop(): most often no own property, the prototype's method.
    const own = Object.getOwnPropertyDescriptor(stream, 'write');
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = (...args: unknown[]) => {
      if (this.onScreen) {
        this.onScreen = false;
        write('\r\x1b[2K');
      }
      return write(...args);
    };
    this.restoreWrite = () => {
      if (own) Object.defineProperty(stream, 'write', own);
      else delete (stream as { write?: unknown }).write;
    };
    this.timer = setInterval(() => this.draw(), this.everyMs);
    this.timer.unref();
    return this;
  }

  private draw(): void {
    const { done, failed } = this.read();
    this.onScreen = false;
    this.stream.write(`\r\x1b[2K${formatProgress(done, failed, Date.now() - this.started, this.noun)}`);
    this.onScreen = true;
    this.drawn = true;
  }

  /** Draws the last figures and ends the line; a second stop does nothing (lis enqueue's drew them again under its summary). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.drawn) {
      this.draw();
      this.onScreen = false;
      this.drawn = false;
      this.stream.write('\n');
    }
    this.restoreWrite?.();
    this.restoreWrite = null;
  }
}

/** Longest reason quoted in a line: the first words of an rsync or HTTP error say enough. */
const REASON_CHARS = 200;

/**
 * Pure: what a run by hand says as it ends with rows of its scope waiting for a retry it may not take yet
 * (given back for our fault, or backing off after the source's), or null when none wait:
 * `10 rows wait for a retry until 15:02:11 (frontend_down: not on n2 (...)); run again then, or start the service.`
 * Times are local, as in the log; with the date when not today.
 */
export function retryWaitLine(waits: Omit<RetryWaits, 'dbNow'>, now: Date): string | null {
  if (waits.rows === 0 || waits.first === null || waits.last === null) return null;
  const at = (d: Date) => clockTime(d, now);
  const when = at(waits.first) === at(waits.last) ? `until ${at(waits.last)}` : `from ${at(waits.first)} until ${at(waits.last)}`;
  const said = [waits.errorClass, waits.reason && shorten(waits.reason)].filter(Boolean).join(': ');
  const others = waits.otherReasons ? `; and ${waits.otherReasons} other reason${waits.otherReasons === 1 ? '' : 's'}` : '';
  const why = said ? ` (${said}${others})` : '';
  const rows = waits.rows === 1 ? '1 row waits' : `${waits.rows.toLocaleString('en-GB')} rows wait`;
  return `${rows} for a retry ${when}${why}; run again then, or start the service.`;
}

/**
 * Pure: what a run by hand says as it ends with rows of its scope held by other workers, or null when none are:
 * `10 rows are held by another worker, web3:4242:9f2c01ab (last heartbeat 12s ago): if it is gone, lis_managerd
 * releases them once it has been silent 60s (manager.staleWorkerSeconds).`
 */
export function heldRowsLine(held: Omit<HeldRows, 'dbNow'>, now: Date, staleWorkerSeconds: number): string | null {
  if (held.rows === 0 || held.topWorker === null) return null;
  const rows = held.rows === 1 ? '1 row is' : `${held.rows.toLocaleString('en-GB')} rows are`;
  const beat =
    held.topHeartbeat === null
      ? 'no heartbeat recorded'
      : `last heartbeat ${Math.max(0, Math.round((now.getTime() - held.topHeartbeat.getTime()) / 1000))}s ago`;
  const by = held.workers === 1 ? `another worker, ${held.topWorker}` : `${held.workers} other workers (the most by ${held.topWorker})`;
  const gone =
    held.workers === 1 ? 'if it is gone, lis_managerd releases them once it has' : 'a worker that is gone has its rows released by lis_managerd once it has';
  return `${rows} held by ${by} (${beat}): ${gone} been silent ${staleWorkerSeconds}s (manager.staleWorkerSeconds).`;
}

/** How many disabled datasources a run's last line names; the rest are counted. */
const NAMED_DATASOURCES = 3;

/**
 * Pure: what a run by hand says as it ends while datasources of its country are disabled (their rows parked, so
 * not claimed however many there are), or null when none is:
 * `Datasource 16 of uk is disabled (97% of 212 rows failed ...): its rows are parked, not waiting; lis datasource
 * enable uk 16 puts them back.`
 */
export function disabledDatasourcesLine(disabled: DisabledDatasource[], country: string): string | null {
  if (disabled.length === 0) return null;
  const named = disabled.slice(0, NAMED_DATASOURCES).map((d) => `${d.datasourceId} (${d.reason ? shorten(d.reason) : 'no reason recorded'})`);
  const more = disabled.length > NAMED_DATASOURCES ? ` and ${disabled.length - NAMED_DATASOURCES} more` : '';
  if (disabled.length === 1)
    return `Datasource ${named[0]} of ${country} is disabled: its rows are parked, not waiting; lis datasource enable ${country} ${disabled[0].datasourceId} puts them back.`;
  return `Datasources ${named.join(', ')}${more} of ${country} are disabled: their rows are parked, not waiting; lis datasource enable ${country} <datasource> puts one's back (lis datasource show ${country} lists them).`;
}

function shorten(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > REASON_CHARS ? `${line.slice(0, REASON_CHARS - 3)}...` : line;
}

/** `15:02:11`, or `Dec 01 15:02:11` when not on `now`'s day (local time, as the log's lines), rounded up. */
function clockTime(when: Date, now: Date): string {
  // Up to the next whole second: a run started at the time said finds the rows due.
  const d = new Date(Math.ceil(when.getTime() / 1000) * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleString('en-GB', { month: 'short' })} ${pad(d.getDate())} ${time}`;
}
