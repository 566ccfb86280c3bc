/**
 * `promise`, or a failure naming `what` once `deadlineMs` has passed: a test waits for an event, never for a
 * fixed time, and never for ever.
 */
export async function within<T>(promise: Promise<T>, what: string, deadlineMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${deadlineMs} ms`)), deadlineMs)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
