import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomicLib from 'write-file-atomic';

/**
 * Writes a whole file so that readers (and a crash at any moment) see either
 * the old file or the new one, never half of it: write-file-atomic writes a
 * temp file beside it, fsyncs and renames. Folders are made as needed.
 */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomicLib(file, data, { fsync: true });
}
