import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import { enqueueRows, type UrlRow } from '../queue/enqueue-rows.ts';

/** What became of one batch: counts for the rows stored, and every row that was not, with why. */
export interface BatchOutcome {
  inserted: number;
  refreshed: number;
  /** Rows the table refused on their own (a CHECK, a bad value): skipped like a bad line. */
  refused: Array<{ row: UrlRow; reason: string }>;
  /**
   * Rows not stored because the batch kept failing (the database, a trigger): the run must not succeed.
   * `error` is the last one, when there was one, so that a caller can tell an unreachable server apart.
   */
  failed: Array<{ row: UrlRow; reason: string; error?: unknown }>;
}

export interface StoreBatchOptions {
  /** Waits before each retry of a batch that failed as a whole; default 0.5 s then 2 s. */
  retryDelaysMs?: number[];
}

/**
 * True for an error about the data of some row (SQLSTATE class 22, data
 * exception, or 23, integrity constraint): retrying the same rows cannot help,
 * but splitting the batch finds the row.
 */
export function isRowDataError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/**
 * Stores a batch, losing nothing silently: a batch the table refuses because
 * of a row's data is split in halves until that row is alone, and only it is
 * refused; a batch failing for another reason is retried, then reported as
 * failed with every row in it.
 */
export async function storeBatch(db: Db, country: string, rows: UrlRow[], options: StoreBatchOptions = {}): Promise<BatchOutcome> {
  const delays = options.retryDelaysMs ?? [500, 2000];
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await enqueueRows(db, country, rows);
      return { ...r, refused: [], failed: [] };
    } catch (error) {
      if (isRowDataError(error)) {
        if (rows.length === 1)
          return { inserted: 0, refreshed: 0, refused: [{ row: rows[0], reason: `refused by the table: ${errorMessage(error)}` }], failed: [] };
        const half = Math.ceil(rows.length / 2);
        const [a, b] = [await storeBatch(db, country, rows.slice(0, half), options), await storeBatch(db, country, rows.slice(half), options)];
        return {
          inserted: a.inserted + b.inserted,
          refreshed: a.refreshed + b.refreshed,
          refused: [...a.refused, ...b.refused],
          failed: [...a.failed, ...b.failed],
        };
      }
      if (attempt >= delays.length) return { inserted: 0, refreshed: 0, refused: [], failed: rows.map((row) => ({ row, reason: errorMessage(error), error })) };
      await new Promise((resolve) => setTimeout(resolve, delays[attempt]));
    }
  }
}

/** Pure: line numbers as ranges for a person, `3-7, 12, 15-16`. */
export function lineRanges(lines: number[]): string {
  const sorted = [...new Set(lines)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}
