import type { ProbeOutcome } from '../db/probe-server.ts';

/** Failed probes in a row, at the least, before the database is judged frozen: one lost probe is not an outage. */
export const FROZEN_AFTER_PROBES = 3;

/** The database answering none of the probes since `since` (ms, monotonic: performance.now()): `failed` of them, the last failing with `last`. */
export interface Silence {
  since: number;
  failed: number;
  last: Error;
}

/** Pure: the silence after a probe begun at `startedAt` ended with `outcome` (null: the database answered). */
export function afterProbe(silence: Silence | null, outcome: ProbeOutcome, startedAt: number): Silence | null {
  if (outcome.answered) return null;
  return { since: silence?.since ?? startedAt, failed: (silence?.failed ?? 0) + 1, last: outcome.error };
}

/**
 * Pure: a silence that makes the database frozen, rather than busy: FROZEN_AFTER_PROBES probes in a row
 * unanswered, over at least `boundMs`. A busy server (a long purge, a scan waiting on row locks) answers them.
 */
export function isFrozen(silence: Silence | null, now: number, boundMs: number): silence is Silence {
  return silence !== null && silence.failed >= FROZEN_AFTER_PROBES && now - silence.since >= boundMs;
}

/** Pure: how long between probes' starts, so that FROZEN_AFTER_PROBES of them span `boundMs`. */
export function probeEveryMs(boundMs: number): number {
  return boundMs / (FROZEN_AFTER_PROBES - 1);
}

export interface DatabaseWatch {
  /** Resolves with the silence once the database is judged frozen; never, if it is not before stop(). */
  frozen: Promise<Silence>;
  stop(): void;
}

/**
 * While a part of the upkeep runs (its statements have no bound: a purge may rightly take an hour), probes the
 * database every probeEveryMs(boundMs), one probe at a time, and resolves `frozen` once it has answered none
 * for `boundMs` (isFrozen). `onProbe` hears each probe's outcome and the silence so far, for the log.
 */
export function watchDatabase(
  probe: () => Promise<ProbeOutcome>,
  boundMs: number,
  onProbe: (outcome: ProbeOutcome, silence: Silence | null, previous: Silence | null) => void,
): DatabaseWatch {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let silence: Silence | null = null;
  let judged: (s: Silence) => void = () => {};
  const frozen = new Promise<Silence>((resolve) => (judged = resolve));
  const round = async () => {
    const startedAt = performance.now();
    const outcome = await probe();
    if (stopped) return;
    const previous = silence;
    silence = afterProbe(silence, outcome, startedAt);
    onProbe(outcome, silence, previous);
    if (isFrozen(silence, performance.now(), boundMs)) return judged(silence);
    // The next probe a full period after this one began, at once if this one took that long.
    timer = setTimeout(() => void round(), Math.max(0, startedAt + probeEveryMs(boundMs) - performance.now()));
    // The part's own work keeps the process alive, never this.
    timer.unref();
  };
  timer = setTimeout(() => void round(), probeEveryMs(boundMs));
  timer.unref();
  return {
    frozen,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
