import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Origin, OriginSource } from '../config/imaged-config.ts';

/** The URL of `key` at one source: `s3://bucket/prefix/key`, `https://base/key`, `file:///dir/key`. Pure. */
export function sourceUrl(source: OriginSource, key: string): string {
  const encoded = key.split('/').map(encodeURIComponent).join('/');
  if (source.type === 's3') return `s3://${source.bucket}/${source.prefix}${encoded}`;
  if (source.type === 'http') return `${source.baseUrl}${encoded}`;
  return pathToFileURL(path.join(source.dir, key)).href;
}

/**
 * What every key's URL at `source` starts with, ending in `/` (or the s3 prefix as configured): a folder's
 * `file:///srv/up/`, so its keys are cut from the URL without a leading `/` and `/srv/upper` is not its. Pure.
 */
function sourcePrefix(source: OriginSource): string {
  if (source.type !== 'folder') return sourceUrl(source, '');
  const href = pathToFileURL(source.dir).href;
  return href.endsWith('/') ? href : `${href}/`;
}

/** The row's `image_url` for a key: its URL at the origin's first source. */
export function originImageUrl(origin: Origin, key: string): string {
  return sourceUrl(origin.sources[0], key);
}

/**
 * Where a row's original may be fetched: its own URL and, when that URL is
 * an origin's first source, the same key at the origin's fallbacks (tried
 * in parallel, phizer's slaves). Pure.
 */
export function candidateUrls(imageUrl: string, origins: Record<string, Origin>): string[] {
  for (const origin of Object.values(origins)) {
    const prefix = sourcePrefix(origin.sources[0]);
    if (origin.sources.length < 2 || !imageUrl.startsWith(prefix)) continue;
    const encodedKey = imageUrl.slice(prefix.length);
    let key: string;
    try {
      key = encodedKey.split('/').map(decodeURIComponent).join('/');
    } catch {
      continue;
    }
    return [imageUrl, ...origin.sources.slice(1).map((s) => sourceUrl(s, key))];
  }
  return [imageUrl];
}
