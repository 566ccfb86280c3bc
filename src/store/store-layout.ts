import path from 'node:path';
import type { LisConfig } from '../config/config-schema.ts';
import { lis_path_for_hash, storePath } from '../hash/image-hash.ts';

/**
 * Where files live. Originals: `<stores.originals>/<country>/<aa>/<bb>/<hash>`
 * (no extension: the bytes say what they are). Thumbnails, in the store and on
 * every frontend alike: `<root>/<country>/<aa>/<bb>/<hash>_<preset>.<ext>`.
 */
export function originalPath(config: Pick<LisConfig, 'stores'>, country: string, hash: string): string {
  return storePath(config.stores.originals, country, hash);
}

/**
 * `uk/a3/0f/<hash>_small.jpg`: the same below the thumbnail store and below
 * each frontend's root. Version 1 (a row's first thumbnails) keeps that name;
 * a later version (a rework of a live row) is `<hash>_small.v2.jpg`, so rsync
 * never overwrites the files the frontends serve while the new ones go out.
 */
export function thumbnailRelativePath(country: string, hash: string, preset: string, ext: string, version = 1): string {
  return `${country}/${lis_path_for_hash(hash)}_${preset}${version > 1 ? `.v${version}` : ''}.${ext}`;
}

/** The version of a row's next thumbnails: 1 for a row never thumbnailed, else one more than its image_data's. */
export function nextThumbnailVersion(imageData: { presets?: unknown; version?: unknown } | null | undefined): number {
  if (!imageData?.presets) return 1;
  return (typeof imageData.version === 'number' && imageData.version >= 1 ? imageData.version : 1) + 1;
}

export function thumbnailStorePath(config: Pick<LisConfig, 'stores'>, relativePath: string): string {
  return path.join(config.stores.thumbnails, relativePath);
}
