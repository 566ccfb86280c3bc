import type { Db } from '../db/connect.ts';
import { claimChunk, type ClaimRequest, type ClaimedRow } from './claim-chunk.ts';

/**
 * Claims chunks in id order, resuming after the last id it got, one cursor
 * per priority (new rows, reworks).
 *
 * Rows already worked leave dead entries at the head of claimable_rows' index until
 * vacuum removes them; a claim that always started from the lowest id would
 * step over all of them every time and slow down as a drain goes on. Starting
 * after our last id skips them. When nothing is left ahead, it wraps to the
 * start once, which picks up rows whose retry time has come.
 */
export class ClaimCursor {
  private after: [string, string] = ['0', '0'];

  constructor(
    private readonly db: Db,
    private readonly request: Omit<ClaimRequest, 'afterId' | 'afterReworkId' | 'limit'>,
  ) {}

  async next(limit: number): Promise<ClaimedRow[]> {
    const rows = await this.claim(limit, this.after);
    let all = rows;
    if (rows.length < limit && (this.after[0] !== '0' || this.after[1] !== '0')) {
      const more = await this.claim(limit - rows.length, ['0', '0']);
      all = rows.concat(more);
      // After a wrap each cursor follows the wrapped part, so the tail is not rescanned.
      this.after = [lastOf(more, 0) ?? lastOf(rows, 0) ?? '0', lastOf(more, 1) ?? lastOf(rows, 1) ?? '0'];
      return all;
    }
    this.after = [lastOf(rows, 0) ?? (rows.length < limit ? '0' : this.after[0]), lastOf(rows, 1) ?? (rows.length < limit ? '0' : this.after[1])];
    return all;
  }

  private claim(limit: number, after: [string, string]): Promise<ClaimedRow[]> {
    return claimChunk(this.db, { ...this.request, limit, afterId: after[0], afterReworkId: after[1] });
  }
}

/** The last id of one priority in rows sorted by (priority, id). */
function lastOf(rows: ClaimedRow[], priority: number): string | undefined {
  for (let i = rows.length - 1; i >= 0; i--) if (rows[i].priority === priority) return rows[i].id;
  return undefined;
}
