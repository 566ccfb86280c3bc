import crypto from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** `<file>.tmp-<pid>-<random>`: the writer's pid in the name lets cleanup tell a dead writer's leftover from a write in progress. */
const TEMP_SUFFIX = /\.tmp-(\d+)-[0-9a-f]+$/;

export function tempPathFor(file: string): string {
  return `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
}

/** The pid that wrote a temp file, or null when the name is not one of our temp files. */
export function tempFileWriter(file: string): number | null {
  const m = TEMP_SUFFIX.exec(file);
  return m ? Number(m[1]) : null;
}

/**
 * Writes a whole file so that readers (and a crash at any moment) see either
 * the old file or the new one, never half of it: a temp file beside it,
 * fsync, rename. Folders are made as needed; the temp file goes on failure.
 * (Not write-file-atomic: its temp names do not say which process wrote
 * them, and cleanup after a SIGKILL needs to know.)
 */
export async function writeFileAtomic(file: string, data: Buffer | string, options: WriteOptions = {}): Promise<void> {
  const temp = tempPathFor(file);
  try {
    const handle = await openMakingFolders(temp, options);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

export interface WriteOptions {
  /**
   * Called before missing folders are made, and may throw to refuse: a store's folder that is gone may be a disk
   * no longer mounted, and making its folders again would fill the host's own disk instead (see
   * assertStoreMounted in src/daemon/store-check.ts).
   */
  beforeMakingFolders?: () => Promise<void>;
}

/**
 * Opens a new file for writing, making its folders only when they are missing:
 * they usually exist, and each call is a turn on libuv's pool, which sharp's
 * decodes share.
 */
async function openMakingFolders(file: string, options: WriteOptions) {
  try {
    return await open(file, 'w', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await options.beforeMakingFolders?.();
    await mkdir(path.dirname(file), { recursive: true });
    return open(file, 'w', 0o644);
  }
}
