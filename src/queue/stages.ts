/**
 * The pipeline's stages and a row's states within one (their values are the
 * schema's, src/db/queue-columns.ts), and which stages daemons work.
 */
import { STAGES, type Stage } from '../db/queue-columns.ts';

export { STAGES, STATES, type Stage, type State } from '../db/queue-columns.ts';

/** The stages a daemon claims from. */
export const WORK_STAGES = ['download', 'thumbnail', 'push'] as const;
export type WorkStage = (typeof WORK_STAGES)[number];

/** The stage a row moves to when `stage` finishes it. */
export function nextStage(stage: WorkStage): Stage {
  return STAGES[STAGES.indexOf(stage) + 1];
}

export function isWorkStage(value: string): value is WorkStage {
  return (WORK_STAGES as readonly string[]).includes(value);
}
