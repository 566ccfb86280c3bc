import type { Db } from '../db/connect.ts';
import { claimChunk, type ClaimRequest, type ClaimedRow } from './claim-chunk.ts';

/**
 * Claims chunks in id order, resuming after the last id it got.
 *
 * Rows already worked leave dead entries at the head of claimable_rows' index until
 * vacuum removes them; a claim that always started from the lowest id would
 * step over all of them every time and slow down as a drain goes on. Starting
 * after our last id skips them. When nothing is left ahead, it wraps to the
 * start once, which picks up rows whose retry time has come.
 */
export class ClaimCursor {
  private afterId = '0';

  constructor(
    private readonly db: Db,
    private readonly request: Omit<ClaimRequest, 'afterId' | 'limit'>,
  ) {}

  async next(limit: number): Promise<ClaimedRow[]> {
    let rows = await claimChunk(this.db, { ...this.request, limit, afterId: this.afterId });
    if (rows.length < limit && this.afterId !== '0') {
      const more = await claimChunk(this.db, { ...this.request, limit: limit - rows.length, afterId: '0' });
      // After a wrap the cursor follows the wrapped part, so the tail is not rescanned.
      this.afterId = more.length ? more[more.length - 1].id : rows.length ? rows[rows.length - 1].id : '0';
      return rows.concat(more);
    }
    this.afterId = rows.length ? rows[rows.length - 1].id : '0';
    return rows;
  }
}
