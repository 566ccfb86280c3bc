/**
 * Watches this host's wall clock against the monotonic one and calls `onStepBack` when the wall clock went back
 * (an NTP step, a host booted on a wrong hardware clock and then set right) by more than `toleranceMs`. Timers
 * run on the monotonic clock, but whatever computes its next time from the wall clock (node-cron's next slot) is
 * then that much late: a schedule of every 30 s waited out the whole step, an hour's step an hour without a run.
 * Returns the stop. The interval is unref'd: it never keeps a process up by itself.
 */
export function watchClockSteps(onStepBack: (ms: number) => void, everyMs = 5000, toleranceMs = 2000): () => void {
  let wall = Date.now();
  let mono = performance.now();
  const timer = setInterval(() => {
    const [wallNow, monoNow] = [Date.now(), performance.now()];
    const drift = wallNow - wall - (monoNow - mono);
    [wall, mono] = [wallNow, monoNow];
    if (drift < -toleranceMs) onStepBack(-drift);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
