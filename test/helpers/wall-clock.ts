/**
 * This process's wall clock stepped by `ms` (an NTP step, in-process): `Date.now()` and `new Date()` move, the
 * monotonic clock (`performance.now()`, and the timers) does not. Steps add up; restoreWallClock puts it back.
 */
const RealDate = Date;
let offset = 0;

class SteppedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...(args as [string | number | Date]));
  }

  static override now(): number {
    return RealDate.now() + offset;
  }
}

export function stepWallClock(ms: number): void {
  offset += ms;
  globalThis.Date = SteppedDate as DateConstructor;
}

export function restoreWallClock(): void {
  offset = 0;
  globalThis.Date = RealDate;
}
