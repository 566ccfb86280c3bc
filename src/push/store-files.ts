import fs from 'node:fs/promises';
import path from 'node:path';
import type { PushRow } from './push-plan.ts';

/** Stats at once: enough to hide disk latency, few enough not to run out of file handles. */
const STAT_PARALLEL = 32;

/**
 * Rows with a file missing from the thumbnail store, with the first missing
 * path: rsync must not be asked for them (a missing source file makes its run
 * a partial failure, exit 23, for every frontend).
 */
export async function findMissingFiles(storeRoot: string, rows: PushRow[]): Promise<Map<string, string>> {
  const missing = new Map<string, string>();
  let next = 0;
  const work = async () => {
    while (next < rows.length) {
      const row = rows[next++];
      for (const file of row.files) {
        try {
          const stat = await fs.stat(path.join(storeRoot, file));
          if (!stat.isFile()) throw new Error('not a file');
        } catch {
          missing.set(row.id, file);
          break;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_PARALLEL, rows.length) }, work));
  return missing;
}
