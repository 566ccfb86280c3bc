import { LisError } from '../errors.ts';

/** Thrown when the gate is full: the server answers 503 with Retry-After. */
export class BusyError extends LisError {
  constructor(message: string) {
    super('ERR_IMAGED_BUSY', message);
    this.name = 'BusyError';
  }
}

/** A request's wait ended because its client went away (or it was answered otherwise): nobody to answer. */
export class RequestGoneError extends LisError {
  constructor() {
    super('ERR_IMAGED_REQUEST_GONE', 'the request ended before its thumbnail was made');
    this.name = 'RequestGoneError';
  }
}

/** One run of a key: its result, how many requests still want it, and its place in the queue while it waits for a slot. */
interface Flight<T> {
  result: Promise<T>;
  interest: number;
  /** Set while the run waits for a slot: takes it out of the queue (nobody wants it any more). */
  dequeue: (() => void) | null;
  /** Aborted when every request for a started run has gone: what it has not begun yet it may leave undone. */
  unwanted: AbortController;
}

/**
 * In-process single flight with a bound: one run per key at a time (a
 * request for a key already being made waits for that run and gets its
 * result), at most `maxRunning` runs, at most `maxWaiting` requests waiting
 * (for a slot or for a run of their key); beyond that, BusyError at once.
 * A request whose `signal` aborts (its client hung up) stops waiting at once
 * and frees its waiting place; a run still queued for a slot that nobody
 * wants any more leaves the queue unstarted. A run that has started is
 * finished all the same (never left half-done), for its file and its row; its
 * `unwanted` signal tells it that nobody waits for it any more, so that it need
 * not begin what it has not begun (a fetch still waiting for its host's turn),
 * and a new request for its key starts a run of its own rather than join one
 * that may give up.
 */
export class GenerationGate<T> {
  private readonly runs = new Map<string, Flight<T>>();
  private readonly queue: Array<() => void> = [];
  private running = 0;
  private waiting = 0;

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {}

  /** Figures for metrics and tests. */
  get stats(): { running: number; waiting: number; keys: number } {
    return { running: this.running, waiting: this.waiting, keys: this.runs.size };
  }

  run(key: string, make: (unwanted: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new RequestGoneError());
    const current = this.runs.get(key);
    if (current) {
      if (this.waiting >= this.maxWaiting) return Promise.reject(new BusyError(`${this.waiting} requests already waiting (imaged.maxWaiting)`));
      this.waiting++;
      current.interest++;
      return this.follow(current, signal, () => this.waiting--);
    }
    if (this.running >= this.maxRunning && this.waiting >= this.maxWaiting) {
      return Promise.reject(
        new BusyError(`${this.running} generations running and ${this.waiting} requests waiting (imaged.maxGenerations, imaged.maxWaiting)`),
      );
    }
    const flight: Flight<T> = { result: Promise.resolve() as Promise<T>, interest: 1, dequeue: null, unwanted: new AbortController() };
    flight.result = this.slot(key, flight).then(async () => {
      try {
        return await make(flight.unwanted.signal);
      } finally {
        this.running--;
        if (this.runs.get(key) === flight) this.runs.delete(key);
        this.queue.shift()?.();
      }
    });
    // A run dequeued unstarted rejects with nobody left to hear it.
    flight.result.catch(() => {});
    this.runs.set(key, flight);
    return this.follow(flight, signal, () => {});
  }

  /** The run's result for one request, or RequestGoneError as soon as its signal aborts; `leave` runs once either way. */
  private follow(flight: Flight<T>, signal: AbortSignal | undefined, leave: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let left = false;
      const end = () => {
        if (left) return false;
        left = true;
        leave();
        signal?.removeEventListener('abort', gone);
        return true;
      };
      const gone = () => {
        if (!end()) return;
        flight.interest--;
        if (flight.interest === 0) this.abandon(flight);
        reject(new RequestGoneError());
      };
      signal?.addEventListener('abort', gone, { once: true });
      flight.result.then(
        (value) => end() && resolve(value),
        (error: unknown) => end() && reject(error as Error),
      );
    });
  }

  /** Nobody wants the run any more: out of the queue when it waits for a slot, else told so (and left by its key). */
  private abandon(flight: Flight<T>): void {
    if (flight.dequeue) return flight.dequeue();
    for (const [key, run] of this.runs) if (run === flight) this.runs.delete(key);
    flight.unwanted.abort();
  }

  /** Resolves when a run may start (counting it as running); rejects if it leaves the queue unstarted. */
  private slot(key: string, flight: Flight<T>): Promise<void> {
    if (this.running < this.maxRunning) {
      this.running++;
      return Promise.resolve();
    }
    this.waiting++;
    return new Promise((resolve, reject) => {
      const start = () => {
        flight.dequeue = null;
        this.waiting--;
        this.running++;
        resolve();
      };
      flight.dequeue = () => {
        flight.dequeue = null;
        this.queue.splice(this.queue.indexOf(start), 1);
        this.waiting--;
        if (this.runs.get(key) === flight) this.runs.delete(key);
        reject(new RequestGoneError());
      };
      this.queue.push(start);
    });
  }
}
