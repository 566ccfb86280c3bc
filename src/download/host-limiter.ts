/**
 * Politeness and fairness: at most `concurrency` jobs at once overall, at
 * most `perHost` to any one host, and at least `perHostDelayMs` between the
 * starts of two jobs to one host. Hosts take turns (round robin), so a chunk
 * full of one slow host's URLs leaves the other slots to the other hosts
 * instead of queueing them all behind it.
 *
 * The limiter keeps its per-host state across chunks (a delay holds from one
 * chunk to the next); the clock is injected so the rules are testable.
 */
export interface HostLimits {
  concurrency: number;
  perHost: number;
  perHostDelayMs: number;
}

interface HostState {
  active: number;
  lastStart: number;
  queue: unknown[];
}

export type Take<T> = { item: T; host: string } | { waitMs: number } | null;

export class HostLimiter {
  private readonly hosts = new Map<string, HostState>();
  /** Hosts with queued jobs, in turn order. */
  private turn: string[] = [];
  private activeTotal = 0;
  private queuedTotal = 0;
  /** Jobs running so long that their slots were handed to others (see demote). */
  private slowTotal = 0;
  /** When forgetIdle last looked at every host. */
  private sweptAt = -Infinity;

  constructor(
    private readonly limits: HostLimits,
    /**
     * The monotonic clock: on the wall clock, a step back of an hour held every host asked in the last hour for that
     * hour (its last start looked an hour ahead), and lis_downloadd stopped downloading.
     */
    private readonly now: () => number = () => performance.now(),
  ) {}

  get active(): number {
    return this.activeTotal;
  }

  get queued(): number {
    return this.queuedTotal;
  }

  /** Hosts whose state is held (tests: it must not grow with every host ever seen). */
  get hostsKept(): number {
    return this.hosts.size;
  }

  add<T>(host: string, item: T): void {
    this.forgetIdle();
    let state = this.hosts.get(host);
    if (!state) this.hosts.set(host, (state = { active: 0, lastStart: -Infinity, queue: [] }));
    if (state.queue.length === 0) this.turn.push(host);
    state.queue.push(item);
    this.queuedTotal++;
  }

  /**
   * The next job allowed to start now (counted as active until `done`), else
   * how long until a delayed host opens, else null (all slots busy, or nothing queued).
   */
  take<T>(): Take<T> {
    if (this.activeTotal >= this.limits.concurrency || this.queuedTotal === 0) return null;
    const now = this.now();
    let soonest = Infinity;
    for (let i = 0; i < this.turn.length; i++) {
      const host = this.turn[i];
      const state = this.hosts.get(host)!;
      if (state.active >= this.limits.perHost) continue;
      const opensAt = state.lastStart + this.limits.perHostDelayMs;
      if (opensAt > now) {
        soonest = Math.min(soonest, opensAt - now);
        continue;
      }
      const item = state.queue.shift() as T;
      // This host goes to the back of the line (or leaves it when it has nothing more).
      this.turn.splice(i, 1);
      if (state.queue.length) this.turn.push(host);
      state.active++;
      state.lastStart = now;
      this.activeTotal++;
      this.queuedTotal--;
      return { item, host };
    }
    return soonest < Infinity ? { waitMs: soonest } : null;
  }

  /**
   * A job that has run for long (a server dripping bytes) gives its overall
   * slot to the queue, so one slow URL does not idle a download slot; at most
   * twice `concurrency` such jobs at once (a slow job is an idle socket and a
   * body capped at maxBytes), so slow hosts cannot take unbounded connections.
   * A quarter of `concurrency` was too few: with one drip-feed URL per chunk
   * the drips outnumbered it and held every slot again. It still counts toward
   * its own host's `perHost`: a host slow to answer (an overloaded one above all)
   * is never asked more at once. Before, each demoted job freed its host's slot
   * too, and a slow host with perHost 2 had 10 downloads in flight at once. True
   * when demoted: then `done(host, true)`.
   */
  demote(host: string): boolean {
    const state = this.hosts.get(host);
    if (!state || this.slowTotal >= this.limits.concurrency * 2) return false;
    this.activeTotal--;
    this.slowTotal++;
    return true;
  }

  done(host: string, demoted = false): void {
    const state = this.hosts.get(host);
    if (demoted) this.slowTotal--;
    else this.activeTotal--;
    if (!state) return;
    state.active--;
    // Forget idle hosts whose delay has passed, so millions of hosts over a day do not pile up.
    if (this.idle(state, this.now())) this.hosts.delete(host);
    this.forgetIdle();
  }

  private idle(state: HostState, now: number): boolean {
    return state.active === 0 && state.queue.length === 0 && state.lastStart + this.limits.perHostDelayMs <= now;
  }

  /**
   * A host whose last job ended within its delay (any download faster than download.perHostDelaySeconds) could not
   * be forgotten then, and was kept for ever unless it came back: a service with a delay set held every host it had
   * ever seen. So every delay (a second at least) the idle hosts whose delay has passed are forgotten; the map holds
   * the hosts of the last delay or two only.
   */
  private forgetIdle(): void {
    if (this.limits.perHostDelayMs <= 0) return;
    const now = this.now();
    if (now - this.sweptAt < Math.max(this.limits.perHostDelayMs, 1000)) return;
    this.sweptAt = now;
    for (const [host, state] of this.hosts) if (this.idle(state, now)) this.hosts.delete(host);
  }

  /** Takes one queued job out (a job nobody wants any more); false when it is not queued (started, or never added). */
  remove(host: string, item: unknown): boolean {
    const state = this.hosts.get(host);
    const at = state ? state.queue.indexOf(item) : -1;
    if (!state || at < 0) return false;
    state.queue.splice(at, 1);
    this.queuedTotal--;
    if (state.queue.length === 0) this.turn = this.turn.filter((h) => h !== host);
    return true;
  }

  /** Takes every queued job of one host out (the host asked us to wait); returns them. */
  takeQueuedOf<T>(host: string): T[] {
    const state = this.hosts.get(host);
    if (!state || state.queue.length === 0) return [];
    const taken = state.queue.splice(0) as T[];
    this.queuedTotal -= taken.length;
    this.turn = this.turn.filter((h) => h !== host);
    if (state.active === 0 && state.lastStart + this.limits.perHostDelayMs <= this.now()) this.hosts.delete(host);
    return taken;
  }

  /** Drops every queued job (not the active ones); returns them. */
  clearQueued<T>(): T[] {
    const dropped: T[] = [];
    for (const host of this.turn) dropped.push(...(this.hosts.get(host)!.queue.splice(0) as T[]));
    this.turn = [];
    this.queuedTotal = 0;
    return dropped;
  }
}

/**
 * Runs every queued job through `run`, as the limits allow, until the queue is
 * empty and nothing is active. When `signal` aborts, no job starts any more
 * and the promise settles once the active ones end; the unstarted are returned.
 */
export function drainLimiter<T>(limiter: HostLimiter, run: (item: T, demote: () => void) => Promise<void>, signal: AbortSignal): Promise<T[]> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    let unstarted: T[] = [];
    const finishIfIdle = () => {
      if (limiter.active === 0 && (limiter.queued === 0 || signal.aborted)) {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve(unstarted);
        return true;
      }
      return false;
    };
    const onAbort = () => {
      unstarted = limiter.clearQueued<T>();
      finishIfIdle();
    };
    const pump = () => {
      if (signal.aborted) return void finishIfIdle();
      for (;;) {
        const next = limiter.take<T>();
        if (next === null) break;
        if ('waitMs' in next) {
          if (!timer) {
            timer = setTimeout(
              () => {
                timer = null;
                pump();
              },
              Math.max(1, next.waitMs),
            );
          }
          break;
        }
        // run() must not throw; a rejection is treated as done all the same.
        let demoted = false;
        const demote = () => {
          if (!demoted && limiter.demote(next.host)) {
            demoted = true;
            pump();
          }
        };
        void run(next.item, demote)
          .catch(() => {})
          .finally(() => {
            limiter.done(next.host, demoted);
            pump();
          });
      }
      finishIfIdle();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    else pump();
  });
}
