import { mkdir } from 'node:fs/promises';

/**
 * `mkdir -p` whose error says why. A recursive mkdir says ENOENT for the first level it could not make, whatever
 * the reason (a read-only or full file system, a folder we may not write): that level made alone says the real
 * one (EROFS, ENOSPC, EACCES), which the row's reason, the pause line and the operator need.
 */
export async function makeFolders(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT' || !error.path) throw error;
    await mkdir(error.path).catch((alone: NodeJS.ErrnoException) => {
      if (alone.code !== 'EEXIST') throw alone; // made meanwhile (another process): go on
    });
    await mkdir(dir, { recursive: true });
  });
}
