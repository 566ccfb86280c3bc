import crypto from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LisConfig } from '../config/config-schema.ts';
import type { StoreIdentities } from '../db/schema.ts';
import { STORE_MARKER } from './store-check.ts';

/**
 * Which store a folder is: a digest of its marker (written once, at the store's first check, with the time it was
 * marked to the millisecond), so two processes that use one store (one machine, or containers sharing a volume)
 * see the same identity, and two machines' stores differ. Null when the folder has no marker (a store not made
 * yet, or a disk not mounted), or it cannot be read: nothing is told from it.
 */
export async function storeIdentity(dir: string): Promise<string | null> {
  try {
    const text = await readFile(path.join(dir, STORE_MARKER));
    return crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
  } catch {
    return null;
  }
}

/** This host's stores as it starts; null with stores.shared (every host mounts the same stores: no clash to tell). */
export async function storeIdentities(config: Pick<LisConfig, 'stores'>): Promise<StoreIdentities | null> {
  if (config.stores.shared) return null;
  const [originals, thumbnails] = await Promise.all([storeIdentity(config.stores.originals), storeIdentity(config.stores.thumbnails)]);
  return { originals, thumbnails };
}

/**
 * Pure: the kinds of store in which `ours` is not the store of a live worker that uses `theirs` under the same host
 * name: both marked, with different markers. One unmarked tells nothing: a worker that started before its store was
 * marked, or a store whose disk is not mounted here, which the store guard pauses for (checkStoreMarker: the store of
 * a second machine started under this name is empty while rows of the name have files, so it is paused so too).
 */
export function storesDiffer(ours: StoreIdentities, theirs: StoreIdentities): Array<keyof StoreIdentities> {
  return (['originals', 'thumbnails'] as const).filter((kind) => theirs[kind] !== null && ours[kind] !== null && theirs[kind] !== ours[kind]);
}
