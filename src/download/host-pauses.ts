/** A host that answered 429 or 503 with Retry-After: until when (ms on the monotonic clock, `performance.now()`) it asked us to wait, and what it said. */
export interface HostPause {
  until: number;
  status: string;
}

/** How often the pauses that ran out are dropped: the map holds the hosts that paused within about this long. */
const SWEEP_EVERY_MS = 60_000;

/**
 * The hosts that asked lis_downloadd to wait, and until when. A pause was forgotten only when its host's next row
 * came after it ran out: a host that throttled once and was never asked again (a feed gone, a one-off URL, a
 * hostile source answering 429 from host name after host name) stayed in the map for the life of the service.
 * Pauses that ran out are now dropped every SWEEP_EVERY_MS, as new ones come. The clock (monotonic: a step of the
 * wall clock must neither end a pause nor stretch it) is injected for tests.
 */
export class HostPauses {
  private readonly pauses = new Map<string, HostPause>();
  private sweptAt = -Infinity;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Pauses kept (tests: it must not grow with every host that ever throttled). */
  get size(): number {
    return this.pauses.size;
  }

  /** The host asked us to wait until `until`: the later of that and a pause it already has, which it returns. */
  pause(host: string, until: number, status: string): HostPause {
    const now = this.now();
    if (now - this.sweptAt >= SWEEP_EVERY_MS) {
      this.sweptAt = now;
      for (const [h, p] of this.pauses) if (p.until <= now) this.pauses.delete(h);
    }
    const known = this.pauses.get(host);
    if (known && known.until >= until) return known;
    const pause = { until, status };
    this.pauses.set(host, pause);
    return pause;
  }

  /** The host's pause, while it lasts. */
  of(host: string): HostPause | null {
    const pause = this.pauses.get(host);
    if (!pause) return null;
    if (pause.until > this.now()) return pause;
    this.pauses.delete(host);
    return null;
  }
}
