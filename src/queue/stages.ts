/**
 * Where a row is in the pipeline. A row waits in a stage until a daemon of
 * that stage claims it; `live` is the end.
 */
export const STAGES = ['download', 'thumbnail', 'push', 'live'] as const;
export type Stage = (typeof STAGES)[number];

/** The stages a daemon claims from. */
export const WORK_STAGES = ['download', 'thumbnail', 'push'] as const;
export type WorkStage = (typeof WORK_STAGES)[number];

/**
 * How a row stands within its stage:
 * - `waiting`: claimable once unlocked and `next_attempt_at` has passed;
 * - `failed`: given up, with `last_error` saying why; `lis retry` puts it back;
 * - `parked`: held back (its datasource is disabled) and not claimed;
 * - `done`: only for live rows.
 */
export const STATES = ['waiting', 'failed', 'parked', 'done'] as const;
export type State = (typeof STATES)[number];

export function nextStage(stage: WorkStage): Stage {
  return STAGES[STAGES.indexOf(stage) + 1];
}

export function isWorkStage(value: string): value is WorkStage {
  return (WORK_STAGES as readonly string[]).includes(value);
}
