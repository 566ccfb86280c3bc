import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import { settledWithin } from '../util/settled-within.ts';
import { heartbeat, reviveWorker, type Beat, type WorkerIdentity } from './worker-registry.ts';

/**
 * A worker's heartbeat on a timer. One beat at a time: a beat held by a database that hangs does not pile
 * others up behind it (each would hold a pool connection). `stop` waits for the beat under way, so that no
 * beat lands after the worker's own markStopped, where it would read our stop as the manager's verdict.
 */
export class HeartbeatLoop {
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | null = null;
  private stopped = false;

  /** `beatOnce` handles its own failures: a beat that rejects is a bug, and the loop says so through `warn`. */
  constructor(
    private readonly everyMs: number,
    private readonly beatOnce: () => Promise<void>,
    private readonly warn: (message: string) => void,
  ) {}

  start(): this {
    this.timer ??= setInterval(() => void this.beat(), this.everyMs);
    return this;
  }

  /** A beat now, or the one under way. */
  beat(): Promise<void> {
    this.beating ??= this.beatOnce()
      .catch((error) => this.warn(`heartbeat: ${errorMessage(error)}`))
      .finally(() => (this.beating = null));
    return this.beating;
  }

  /** True once `stop` was called: a beat that finds us marked stopped then must not register us again. */
  get stopping(): boolean {
    return this.stopped;
  }

  /** No more beats; waits at most `waitMs` for the one under way (a database that hangs holds it). */
  async stop(waitMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.beating) await settledWithin(this.beating, waitMs);
  }
}

export interface ServiceHeartbeatOptions {
  everyMs: number;
  /** The figures of this beat, taken (the next beat's start from nought). */
  take: () => Beat;
  /** A beat that wrote nothing: its figures go with the next. */
  restore?: (beat: Beat) => void;
  /** After each beat the registry took (the /metrics heartbeat gauge). */
  beaten?: () => void;
  warn: (message: string) => void;
  error: (message: string) => void;
}

/**
 * The heartbeat of a service that is not a queue runner (lis_imaged, lis_managerd). A beat that finds the
 * worker marked stopped (the manager found it silent, e.g. through a database outage longer than
 * manager.staleWorkerSeconds) registers it again, keeping what it holds: a live service left marked stopped
 * showed as stopped on every status page for the rest of its life, and its outcomes were never counted again.
 */
export function startServiceHeartbeat(db: Db, identity: WorkerIdentity, options: ServiceHeartbeatOptions): HeartbeatLoop {
  const loop: HeartbeatLoop = new HeartbeatLoop(
    options.everyMs,
    async () => {
      const beat = options.take();
      try {
        if (await heartbeat(db, identity.id, beat)) return options.beaten?.();
        options.restore?.(beat);
        if (loop.stopping) return;
        options.error('The manager marked this worker stopped (no heartbeat for too long): registering again');
        await reviveWorker(db, identity);
      } catch (error) {
        options.restore?.(beat);
        options.warn(`heartbeat: ${errorMessage(error)}`);
      }
    },
    options.warn,
  );
  return loop.start();
}
