import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Creates `file` holding `content` unless it exists; true if we made it, false if it was there (EEXIST).
 *
 * Written aside, then hard-linked into place: link fails with EEXIST as open's O_EXCL does, so two processes
 * cannot both make it, and the file never exists empty or half written. With O_EXCL then write, a process
 * that meets the file in between reads no owner in it and may judge it stale (a lock file, a port's
 * reservation): both would then hold it.
 *
 * The temp file sits beside `file` (link works within one file system only), named for it, our pid and a
 * random part (unique even across pid namespaces sharing the folder); it is removed whatever happens, and
 * left behind only by a process killed between the write and the link, as a dot file nothing reads.
 */
export function createExclusive(file: string, content: string): boolean {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`);
  fs.writeFileSync(temp, content, { mode: 0o644, flag: 'wx' });
  try {
    fs.linkSync(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    fs.rmSync(temp, { force: true });
  }
}
