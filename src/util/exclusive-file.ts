import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Files that appear whole, never empty or half written, for files that name their owner (lock files, the
 * tests' port reservations): a process that met one before its owner's pid was in it would judge it stale.
 * Each is written aside, beside `file` (link and rename work within one file system only), in a temp file
 * named for it, our pid and a random part (unique even across pid namespaces sharing the folder), then put
 * in place. The temp file is removed whatever happens; it is left behind only by a process killed between
 * the write and the move, as a dot file nothing reads.
 */
function writeAside<T>(file: string, content: string, put: (temp: string) => T): T {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`);
  fs.writeFileSync(temp, content, { mode: 0o644, flag: 'wx' });
  try {
    return put(temp);
  } finally {
    fs.rmSync(temp, { force: true });
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
