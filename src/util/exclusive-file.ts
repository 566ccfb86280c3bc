import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isProcessAlive } from './process-alive.ts';

/**
 * Files that appear whole, never empty or half written, for files that name their owner (lock files, the
 * tests' port reservations, a daemon's metrics URL): a process that met one before its owner's pid was in it
 * would judge it stale. Each is written aside, beside `file` (link and rename work within one file system
 * only), in a temp file named for it, our pid and a random part (unique even across pid namespaces sharing
 * the folder), then put in place. The temp file is removed whatever happens; one left by a process killed
 * between the write and the move is removed by the next write of the same file (sweepDeadWriters).
 */
function writeAside<T>(file: string, content: string, put: (temp: string) => T): T {
  sweepDeadWriters(file);
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`);
  fs.writeFileSync(temp, content, { mode: 0o644, flag: 'wx' });
  try {
    return put(temp);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

/** A temp file lives for microseconds: one this old whose writer is gone was left by a killed writer. */
const LEFT_BEHIND_MS = 60_000;

/** The writer's pid in a temp file's name made by writeAside for `file`, or null for any other name. */
export function tempWriterPid(file: string, name: string): number | null {
  const prefix = `.${path.basename(file)}.`;
  if (!name.startsWith(prefix)) return null;
  const match = /^(\d+)-[0-9a-f]{8}\.tmp$/.exec(name.slice(prefix.length));
  return match ? Number(match[1]) : null;
}

/**
 * Removes temp files of `file` left by writers that are gone, so that a lock taken and killed over and over
 * does not fill its folder with dot files. Only old ones: a writer in another pid namespace sharing the folder
 * looks gone to us, and its temp file must live until it has put it in place, microseconds later.
 */
function sweepDeadWriters(file: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(file));
  } catch {
    return; // no folder yet: the write says why
  }
  for (const name of names) {
    const pid = tempWriterPid(file, name);
    if (pid === null || isProcessAlive(pid)) continue;
    const temp = path.join(path.dirname(file), name);
    try {
      if (Date.now() - fs.statSync(temp).mtimeMs > LEFT_BEHIND_MS) fs.rmSync(temp, { force: true });
    } catch {
      // gone already, or not ours to judge: another writer's sweep got there first
    }
  }
}

/**
 * Creates `file` holding `content` unless it exists; true if we made it, false if it was there (EEXIST).
 * Hard-linked into place: link fails with EEXIST as open's O_EXCL does, so two processes cannot both make
 * it. (With O_EXCL then a write, a process meeting the file in between reads no owner in it.)
 */
export function createExclusive(file: string, content: string): boolean {
  return writeAside(file, content, (temp) => {
    try {
      fs.linkSync(temp, file);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  });
}

/**
 * Replaces `file` (or creates it) with one holding `content`, renamed over it: at every moment the path holds
 * the old file or the new one, whole, and is never missing (as it would be between an unlink and a create,
 * where a createExclusive by someone else could slip in).
 */
export function replaceWhole(file: string, content: string): void {
  writeAside(file, content, (temp) => fs.renameSync(temp, file));
}

/** `file`'s text, or null when there is none (ENOENT); any other failure is thrown: a file that names its owner and cannot be read cannot be judged. */
export function readFileOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
