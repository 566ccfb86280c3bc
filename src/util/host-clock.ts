/**
 * A time of the database's clock (a retry time, a heartbeat) as this host's clock shows it: `now` here plus
 * how far it is from the database's `now()` read with it. Every lock, heartbeat and retry decision is made on
 * the database's clock, so hosts whose clocks drift agree on them; what a host tells its operator ("run again
 * at 15:02", "last heartbeat 12s ago") must then be said on the clock the operator reads, this host's, or a
 * host 10 minutes fast says "run again" 10 minutes early and a live worker's heartbeat "600s ago". Pure.
 */
export function toHostClock(databaseTime: Date, databaseNow: Date, hostNow: Date): Date {
  return new Date(hostNow.getTime() + (databaseTime.getTime() - databaseNow.getTime()));
}
