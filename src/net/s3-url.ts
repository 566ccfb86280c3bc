/** An `s3://` URL's scheme, in any case (schemes are case-insensitive, as for `HTTP://`). */
export const S3_SCHEME = /^s3:\/\//i;

/**
 * `s3://bucket/some/key.jpg` -> bucket and key; null when it is not such a URL: a bucket name S3 does not allow
 * (2-63 lower-case letters, digits, dots and hyphens, starting with a letter or digit), no key, or a broken
 * %-escape in the key. The enqueue check (checkUrl) and the downloader both judge by this, so that a URL taken
 * into the queue is one the downloader can ask S3 for. Pure.
 */
export function parseS3Url(url: string): { bucket: string; key: string } | null {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,62})\/(.+)$/i.exec(url);
  // The scheme in any case; the bucket as S3 names them, lower-case only (`s3://Bucket/k` names no bucket).
  if (!m || m[1] !== m[1].toLowerCase()) return null;
  try {
    return { bucket: m[1], key: decodeURIComponent(m[2]) };
  } catch {
    // A URIError thrown out of a fetch that never throws became the worker's `internal`: retried for ever.
    return null;
  }
}
