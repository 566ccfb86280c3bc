import { settledWithin } from '../../src/util/settled-within.ts';

/**
 * `promise`'s value, or a failure naming `what` once `deadlineMs` has passed: a test waits for an event, never for
 * a fixed time, and never for ever. (The project's one bounded wait, settledWithin, with the value kept.)
 */
export async function within<T>(promise: Promise<T>, what: string, deadlineMs: number): Promise<T> {
  if (!(await settledWithin(promise, deadlineMs))) throw new Error(`no ${what} within ${deadlineMs} ms`);
  return promise;
}
