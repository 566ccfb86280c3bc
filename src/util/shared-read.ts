/**
 * One read shared by every caller for `maxAgeMs` (and while it is in flight),
 * with when it was made: N open status pages, refreshing every few seconds,
 * cost one read a period, not N. A failed read is not kept, so the next caller
 * tries again. A caller may ask for a fresher value than `maxAgeMs` (0: a new read).
 */
export function sharedRead<T>(read: () => Promise<T>, maxAgeMs: number): (fresherThanMs?: number) => Promise<{ value: T; at: Date }> {
  let last: { started: number; result: Promise<{ value: T; at: Date }> } | null = null;
  return (fresherThanMs = maxAgeMs) => {
    // Its age on the monotonic clock: a step back of the wall clock kept a read that long.
    if (last && performance.now() - last.started <= Math.min(maxAgeMs, fresherThanMs)) return last.result;
    const started = performance.now();
    const result = read().then((value) => ({ value, at: new Date() }));
    const entry = { started, result };
    last = entry;
    result.catch(() => {
      if (last === entry) last = null;
    });
    return result;
  };
}
