import readline from 'node:readline';
import type { Readable } from 'node:stream';
import type { Db } from '../db/connect.ts';
import { LisError, errorMessage } from '../errors.ts';
import { parseUrlLine } from './parse-url-line.ts';
import { lineRanges, storeBatch, type BatchOutcome, type StoreBatchOptions } from './store-batch.ts';
import type { UrlRow } from '../queue/enqueue-rows.ts';

export interface EnqueueOptions extends StoreBatchOptions {
  country: string;
  /** For lines without their own `DATASOURCE<TAB>`. */
  datasourceId?: number;
  maxUrlLength: number;
  batchSize: number;
  /** Each bad line (the parser's or the table's verdict), as it is found. */
  onBadLine?: (lineNumber: number, reason: string, line: string) => void;
  onProgress?: (stats: EnqueueStats) => void;
}

export interface EnqueueStats {
  lines: number;
  inserted: number;
  refreshed: number;
  bad: number;
  /** Bad lines that were bad only for want of a datasource (no --datasource, no DATASOURCE<TAB>). */
  noDatasource: number;
}

/**
 * The run stored some lines and not others: a batch kept failing. Carries the
 * figures so far, and names the lines not stored; reading stopped there.
 */
export class EnqueueIncompleteError extends LisError {
  constructor(
    readonly stats: EnqueueStats,
    readonly notStored: number[],
    readonly lastLineRead: number,
    reason: string,
  ) {
    super(
      'ERR_ENQUEUE_INCOMPLETE',
      `${notStored.length} lines not stored (lines ${lineRanges(notStored)}): ${reason}; reading stopped after line ${lastLineRead}, so later lines were not read either. ` +
        `Enqueueing is idempotent: run it again once the cause is fixed.`,
    );
    this.name = 'EnqueueIncompleteError';
  }
}

/**
 * Reads URL lines from a stream and queues them in batches, two batches in
 * flight so that parsing and the database overlap. Bad lines are reported
 * with their numbers and skipped; the rest goes in. Every batch's outcome is
 * awaited: a batch that keeps failing stops the run with an
 * EnqueueIncompleteError naming its lines, never a silent success.
 */
export async function enqueueUrlStream(db: Db, input: Readable, options: EnqueueOptions): Promise<EnqueueStats> {
  const stats: EnqueueStats = { lines: 0, inserted: 0, refreshed: 0, bad: 0, noDatasource: 0 };
  const failed: BatchOutcome['failed'] = [];
  const inFlight = new Set<Promise<void>>();
  const settle = (outcome: BatchOutcome) => {
    stats.inserted += outcome.inserted;
    stats.refreshed += outcome.refreshed;
    for (const r of outcome.refused) {
      stats.bad++;
      options.onBadLine?.(r.row.line ?? 0, r.reason, r.row.url);
    }
    failed.push(...outcome.failed);
    options.onProgress?.(stats);
  };
  const send = async (batch: UrlRow[]) => {
    // The task never rejects: whatever happens to the batch is recorded in `failed`, so no batch can fail unseen.
    const task: Promise<void> = storeBatch(db, options.country, batch, options)
      .then(settle)
      .catch((error: unknown) => {
        failed.push(...batch.map((row) => ({ row, reason: errorMessage(error) })));
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
    if (inFlight.size >= 2) await Promise.race(inFlight);
  };
  let batch: UrlRow[] = [];
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  try {
    for await (let line of lines) {
      if (failed.length) break;
      stats.lines++;
      // A file saved by Windows tools (Notepad, Excel's "CSV UTF-8") starts with a byte order mark, which
      // readline keeps: line 1 would be a bad line ("white space", or a datasource "\uFEFF16"), silently lost.
      if (stats.lines === 1 && line.startsWith('\uFEFF')) line = line.slice(1);
      const parsed = parseUrlLine(line, options.datasourceId, options.maxUrlLength);
      if (parsed.kind === 'skip') continue;
      if (parsed.kind === 'bad') {
        stats.bad++;
        if (parsed.noDatasource) stats.noDatasource++;
        options.onBadLine?.(stats.lines, parsed.reason, line);
        continue;
      }
      batch.push({ datasourceId: parsed.datasourceId, url: parsed.url, line: stats.lines });
      if (batch.length >= options.batchSize) {
        await send(batch);
        batch = [];
      }
    }
    if (batch.length && !failed.length) await send(batch);
    else if (batch.length) failed.push(...batch.map((row) => ({ row, reason: 'not sent: an earlier batch failed' })));
  } finally {
    lines.close();
    await Promise.all(inFlight);
  }
  if (failed.length) {
    const reason = failed.find((f) => !f.reason.startsWith('not sent'))?.reason ?? failed[0].reason;
    throw new EnqueueIncompleteError(
      stats,
      failed.map((f) => f.row.line ?? 0),
      stats.lines,
      reason,
    );
  }
  return stats;
}
