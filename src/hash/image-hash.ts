import crypto from 'node:crypto';
import path from 'node:path';
import { UsageError } from '../errors.ts';

const HASH_PATTERN = /^[0-9a-f]{32}$/;

/**
 * The lowercase hex MD5 of the URL exactly as given (UTF-8 bytes), the same
 * value PostgreSQL's `md5(image_url)` stores in `live_images.image_hash`.
 */
export function lis_hash_for_url(url: string): string {
  // Exported by the Interface to plain JavaScript: a wrong argument is the caller's mistake, said as one (ERR_USAGE).
  if (typeof url !== 'string') throw new UsageError(`lis_hash_for_url: url must be a string, got ${url === null ? 'null' : typeof url}`);
  return crypto.createHash('md5').update(url, 'utf8').digest('hex');
}

export function isImageHash(value: string): boolean {
  return HASH_PATTERN.test(value);
}

/** `a30ff540...` -> `a3/0f/a30ff540...`: two levels of 256 folders keep any one folder small. */
export function lis_path_for_hash(hash: string): string {
  if (typeof hash !== 'string' || !isImageHash(hash))
    throw new UsageError(`lis_path_for_hash: hash must be an image hash (32 lowercase hex digits), got ${JSON.stringify(hash) ?? String(hash)}`);
  return `${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`;
}

/** `<root>/<country>/<tree path>`: where a country's files for one image live in a store or on a frontend. */
export function storePath(root: string, country: string, hash: string): string {
  return path.join(root, country, lis_path_for_hash(hash));
}
