import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LisError } from '../errors.ts';
import { createExclusive, readFileOrNull as readOrNull, replaceWhole } from './exclusive-file.ts';
import { isProcessAlive } from './process-alive.ts';
import { processStart } from './process-start.ts';

/**
 * Lock files naming their holder: one run of lis_cron_frontend per country on a host, one process starting
 * the embedded PostgreSQL at a time. The holder's pid is the file's first line (operators and tests read
 * it there, and write such files by hand), a note follows (who, since when), then a line
 * `process-start=TICKS token=HEX`: the holder's start time (so that a later process given the same pid does
 * not keep a dead holder's lock alive) and a nonce (a file is ours only while it holds exactly what we wrote).
 * A lock whose holder is gone is taken over at once.
 *
 * No npm package does this. proper-lockfile (and lockfile, and @jujulego/pid-file, built on it) judge a
 * lock stale by its age: the holder must keep a timer refreshing it, a SIGKILLed holder blocks the next run
 * for the whole stale period, and the file names no holder to tell an operator. npid and @jujulego/pid-file
 * write the pid after creating the file (read empty in between, and judged stale) and remove the file
 * unconditionally. fs-ext's flock is a native addon, and a lock that goes with its descriptor names nobody.
 */

export class LockHeldError extends LisError {
  readonly holderPid: number;
  constructor(file: string, holderPid: number, holderNote: string) {
    super('ERR_LOCK_HELD', `${file} is held by pid ${holderPid}${holderNote ? ` (${holderNote})` : ''}`);
    this.name = 'LockHeldError';
    this.holderPid = holderPid;
  }
}

/** The last line of a lock file we wrote: its holder's start time and a nonce. */
const IDENTITY_LINE = /^process-start=(\S+) token=[0-9a-f]+$/;

/** What a lock or pid file says: its pid, its note, and (in lock files we wrote) its holder's start time. */
export interface PidFileContent {
  pid: number;
  note: string;
  /** The holder's start time (see processStart), null where the file does not say (written by hand, by another program). */
  start: string | null;
}

/** The pid (first line), note and start time in a lock or pid file's text, or null when its first line is no pid. */
export function parsePidFile(text: string): PidFileContent | null {
  const [first, ...rest] = text.split('\n');
  if (!/^\s*\d+\s*$/.test(first)) return null;
  const pid = Number(first);
  while (rest.length > 0 && rest[rest.length - 1].trim() === '') rest.pop();
  const identity = rest.length > 0 ? IDENTITY_LINE.exec(rest[rest.length - 1]) : null;
  if (identity) rest.pop();
  return { pid, note: rest.join(' ').trim(), start: identity ? identity[1] : null };
}

/** The pid and note written in a lock or pid file, or null when there is none or it is unreadable. */
export function readPidFile(file: string): PidFileContent | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  return parsePidFile(text);
}

/** Whether the process a lock file names still runs: its pid, and the same process (start time) where the file says. */
function holderAlive(holder: PidFileContent): boolean {
  if (!isProcessAlive(holder.pid)) return false;
  if (holder.start === null || holder.start === '-') return true;
  const now = processStart(holder.pid);
  return now === '-' || now === holder.start;
}

/** Takeover guards nested deeper than this mean something keeps killing takers: give up rather than recurse. */
const MAX_GUARD_DEPTH = 4;
/** Retries when the file changed under us (released, taken over by another): each means another process made progress. */
const MAX_TRIES = 10;

type Outcome = { ours: true } | { ours: false; holder: PidFileContent };

/**
 * `file` made ours (holding `content`), or the live process that holds it (or is taking it over).
 *
 * A file without a pid on its first line (empty, garbage) is stale like a dead holder's: ours are linked into
 * place whole (createExclusive), never seen empty, so such a file was not left by a running holder (a hand
 * edit, a file system that lost its data in a crash).
 */
function take(file: string, content: string, depth: number): Outcome {
  for (let tries = 0; tries < MAX_TRIES; tries++) {
    if (createExclusive(file, content)) return { ours: true };
    const text = readOrNull(file);
    if (text === null) continue; // released meanwhile: again
    const holder = parsePidFile(text);
    if (holder && holderAlive(holder)) return { ours: false, holder };
    const outcome = replaceStale(file, text, content, depth);
    if (outcome !== 'changed') return outcome;
  }
  throw new LisError('ERR_LOCK_RACE', `could not take ${file}: it kept changing under us`);
}

/**
 * Replaces `file`, found holding `stale` (a holder that is gone), by ours.
 *
 * Removing it and creating ours is not enough: two processes that both saw it stale would both remove and
 * create, the second removing the first one's new lock, and both would hold it. So the replacement is done
 * under a guard, `<file>.takeover`, taken the same way (created exclusively, holding our content), and only
 * if the file still holds exactly `stale`: nothing else changes a file holding a dead holder's content, its
 * holder being gone and the replacer holding the guard. It is renamed over (replaceWhole), so the path is
 * never missing meanwhile, where a newcomer's createExclusive would slip in after the check. Our contents
 * carry a nonce, so a content, once replaced, never comes back; one written by hand may, stale all the same.
 *
 * A guard left by a process killed mid-takeover must not block the lock for ever. A guard whose own holder
 * is gone is stale in turn, and is replaced the same way, under `<file>.takeover.takeover`, only if it still
 * holds the dead taker's content: so two processes cannot both take it either (nested only as deep as takers
 * were killed in a row, a guard being held for two reads and a rename). Its new holder then re-checks the
 * lock file, whatever the dead taker did before it died: still the stale content (replaced now), or the dead
 * taker's own content (stale in turn, handled on the next try). A guard left behind when the killed taker had
 * made the lock its own blocks nothing: the next holder removes it (removeDeadGuards).
 *
 * 'changed' when the file no longer holds `stale` (taken over, or released, by another): look again.
 */
function replaceStale(file: string, stale: string, content: string, depth: number): Outcome | 'changed' {
  if (depth >= MAX_GUARD_DEPTH) throw new LisError('ERR_LOCK_RACE', `could not take ${file}: ${MAX_GUARD_DEPTH} takeovers of it in a row were killed`);
  const guard = `${file}.takeover`;
  const guarded = take(guard, content, depth + 1);
  // Another live process holds the guard. Taking this same stale content over (the file still holds it): it will
  // hold the file, and is named. Else it came after the file changed, and will find so: look at the file again.
  if (!guarded.ours) return readOrNull(file) === stale ? guarded : 'changed';
  try {
    if (readOrNull(file) !== stale) return 'changed';
    replaceWhole(file, content);
    return { ours: true };
  } finally {
    fs.rmSync(guard, { force: true }); // ours: nobody replaces a live holder's guard
  }
}

/**
 * Removes the takeover guards of `file` whose holders are gone (killed mid-takeover), while we hold `file`:
 * litter otherwise, until the next takeover. Unguarded, as is safe only now: a guard matters only to a
 * replacer that then finds `file` holding the stale content it saw, and while we hold `file` it holds ours
 * (live, so stale to nobody), and after we release it never again holds a content seen before (our nonce).
 * So even two processes that both believe they hold a guard (one's removed under it here) replace nothing.
 */
function removeDeadGuards(file: string): void {
  let guard = file;
  for (let depth = 0; depth < MAX_GUARD_DEPTH; depth++) {
    guard = `${guard}.takeover`;
    const text = readOrNull(guard);
    if (text === null) continue;
    const holder = parsePidFile(text);
    if (!holder || !holderAlive(holder)) fs.rmSync(guard, { force: true });
  }
}

/**
 * Takes the lock file `file` for this process (with `note`: who, since when), or throws LockHeldError naming
 * the live process that holds it. A lock whose holder is gone is taken over; of several processes trying at
 * once (for a free lock or a stale one), exactly one gets it. Returns the function that releases it, which
 * removes the file only while it still holds what we wrote.
 */
export function acquirePidLock(file: string, note = ''): () => void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const oneLine = note.replace(/\s*\n\s*/g, ' ');
  const content = `${process.pid}\n${oneLine}\nprocess-start=${processStart(process.pid)} token=${crypto.randomBytes(8).toString('hex')}\n`;
  const outcome = take(file, content, 0);
  if (!outcome.ours) throw new LockHeldError(file, outcome.holder.pid, outcome.holder.note);
  removeDeadGuards(file);
  return () => {
    // Nobody else changes it while we live (we are its live holder): read, then remove, is safe.
    if (readOrNull(file) === content) fs.rmSync(file, { force: true });
  };
}

/** Waits (polling) for a lock that another process holds, up to `timeoutMs`. */
export async function waitForPidLock(file: string, note: string, timeoutMs: number): Promise<() => void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return acquirePidLock(file, note);
    } catch (error) {
      if (!(error instanceof LockHeldError) || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
