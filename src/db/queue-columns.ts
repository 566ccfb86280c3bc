/**
 * The values of `live_images`' queue columns, as the schema's CHECKs allow
 * them. Here, below the queue, so that the table's types (schema.ts) need
 * nothing from the layers above; src/queue/stages.ts gives their meaning.
 */

/**
 * Where a row is in the pipeline. A row waits in a stage until a daemon of
 * that stage claims it; `live` is the end.
 */
export const STAGES = ['download', 'thumbnail', 'push', 'live'] as const;
export type Stage = (typeof STAGES)[number];

/**
 * How a row stands within its stage:
 * - `waiting`: claimable once unlocked and `next_attempt_at` has passed;
 * - `failed`: given up, with `last_error` saying why; `lis retry` puts it back;
 * - `parked`: held back (its datasource is disabled) and not claimed;
 * - `done`: only for live rows.
 */
export const STATES = ['waiting', 'failed', 'parked', 'done'] as const;
export type State = (typeof STATES)[number];
