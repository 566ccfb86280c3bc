import { LisError } from '../errors.ts';

/** Thrown when the gate is full: the server answers 503 with Retry-After. */
export class BusyError extends LisError {
  constructor(message: string) {
    super('ERR_IMAGED_BUSY', message);
    this.name = 'BusyError';
  }
}

/**
 * In-process single flight with a bound: one run per key at a time (a
 * request for a key already being made waits for that run and gets its
 * result), at most `maxRunning` runs, at most `maxWaiting` requests waiting
 * (for a slot or for a run of their key); beyond that, BusyError at once.
 */
export class GenerationGate<T> {
  private readonly runs = new Map<string, Promise<T>>();
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

  run(key: string, make: () => Promise<T>): Promise<T> {
    const current = this.runs.get(key);
    if (current) {
      if (this.waiting >= this.maxWaiting) return Promise.reject(new BusyError(`${this.waiting} requests already waiting (imaged.maxWaiting)`));
      this.waiting++;
      return current.finally(() => this.waiting--);
    }
    if (this.running >= this.maxRunning && this.waiting >= this.maxWaiting) {
      return Promise.reject(
        new BusyError(`${this.running} generations running and ${this.waiting} requests waiting (imaged.maxGenerations, imaged.maxWaiting)`),
      );
    }
    const run = this.slot().then(async () => {
      try {
        return await make();
      } finally {
        this.running--;
        this.runs.delete(key);
        this.queue.shift()?.();
      }
    });
    this.runs.set(key, run);
    return run;
  }

  /** Resolves when a run may start (counting it as running). */
  private slot(): Promise<void> {
    if (this.running < this.maxRunning) {
      this.running++;
      return Promise.resolve();
    }
    this.waiting++;
    return new Promise((resolve) => {
      this.queue.push(() => {
        this.waiting--;
        this.running++;
        resolve();
      });
    });
  }
}
