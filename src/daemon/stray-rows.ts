/**
 * Rows this worker may hold that no chunk in hand does: a claim whose answer was lost (the server committed it), or a
 * give-back the database refused or left unanswered. The manager would not release them while we beat, nor once we
 * are marked stopped: the runner gives them back before its next claim (releaseHeldExcept), tries once more at the
 * end, and if they are still held then, leaves them to the manager in its stop mark.
 *
 * A connection lost counts too: the database may have been restored from a backup (or failed over to a replica
 * behind), in which rows this worker had claimed before the backup and finished since are held by it again; its
 * heartbeat being alive, nobody else would release them.
 *
 * State only, no I/O: what the runner has to remember between its claims.
 */
export class StrayRows {
  private may = false;
  /** Rows of give-backs refused or unanswered (a lost claim's answer adds none: how many it took is unknown). */
  private refused = 0;
  /** Counts strayed() calls: a give-back clears the strays only if none came while it ran (it may not cover them). */
  private marks = 0;
  private lostSeen: number;
  private afterLost = false;

  /** `connectionsLost`: how many of the pool's connections were lost so far. */
  constructor(private readonly connectionsLost: () => number = () => 0) {
    this.lostSeen = connectionsLost();
  }

  /** Whether the database may hold rows for this worker that no chunk in hand does. */
  get mayHold(): boolean {
    return this.may;
  }

  /** What the stop mark says this worker may still hold: 0, or the rows refused (at least 1). */
  get forStopMark(): number {
    return this.may ? Math.max(this.refused, 1) : 0;
  }

  /** A connection lost since the last look (before a claim): then the rows the database says we hold may be strays. */
  get connectionLostSinceLastLook(): boolean {
    return this.connectionsLost() !== this.lostSeen;
  }

  /** `rows` given back were refused or went unanswered (0: a claim or a write whose answer was lost). */
  strayed(rows: number): void {
    this.may = true;
    this.refused += rows;
    this.marks++;
  }

  /** Before a claim: a connection lost since the last look makes strays possible. */
  lookForLostConnections(): void {
    const lost = this.connectionsLost();
    if (lost === this.lostSeen) return;
    this.lostSeen = lost;
    this.afterLost = true;
    this.strayed(0);
  }

  /** Taken when a give-back of strays starts, for givenBack(). */
  mark(): number {
    return this.marks;
  }

  /**
   * A give-back of strays begun at `since` (mark()) succeeded: why they strayed, for its line; cleared, unless
   * more strayed while it ran.
   */
  givenBack(since: number): { refused: number; afterLostConnection: boolean } {
    const why = { refused: this.refused, afterLostConnection: this.afterLost };
    if (this.marks === since) {
      this.may = false;
      this.refused = 0;
      this.afterLost = false;
    }
    return why;
  }

  /** The last give-back, at the end, succeeded. */
  clear(): void {
    this.may = false;
    this.refused = 0;
  }
}

/** The warning for `freed` strays given back before a claim, saying why they were held. Pure. */
export function straysGivenBackLine(freed: number, why: { refused: number; afterLostConnection: boolean }): string {
  if (why.refused > 0) return `Gave back ${freed} rows the database had refused to take back: no attempt charged`;
  if (why.afterLostConnection)
    return `Gave back ${freed} rows the database says this worker holds and no chunk in hand does (after a lost connection: a database restored from a backup, or failed over): no attempt charged`;
  return `Gave back ${freed} rows a failed claim had taken (the server committed it, its answer was lost): no attempt charged`;
}
