import { createReadStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../errors.ts';
import { storeErrorOf, storeWriteFailure } from './classify-download-error.ts';
import { DownloadError } from './download-error.ts';
import { writtenOutcome, type FetchOutcome, type FetchRequest } from './fetch-original.ts';
import { OriginalWriter } from './original-writer.ts';

/** Whether `file` lies inside one of `roots` (after resolving `..`). Pure. */
export function insideRoots(file: string, roots: string[]): boolean {
  const resolved = path.resolve(file);
  return roots.some((root) => {
    const relative = path.relative(path.resolve(root), resolved);
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
  });
}

/**
 * A `file://` original, allowed only below a configured origin folder
 * (imaged.origins, type folder): an uploads folder waiting to be published.
 * Any other file URL is refused, so the ETL cannot name /etc/passwd.
 * Never throws.
 */
export async function fetchFileOriginal(allowedRoots: string[], request: FetchRequest): Promise<FetchOutcome> {
  let file: string;
  try {
    file = fileURLToPath(request.url);
  } catch {
    return { kind: 'failed', failure: { reason: `bad URL: ${JSON.stringify(request.url.slice(0, 200))}`, errorClass: 'bad_url', retryable: false } };
  }
  if (!insideRoots(file, allowedRoots)) {
    return { kind: 'failed', failure: { reason: `bad URL: ${file} is not below a configured origin folder`, errorClass: 'bad_url', retryable: false } };
  }
  const writer = new OriginalWriter(request.destination, {
    maxBytes: request.maxBytes,
    beforeMakingFolders: request.beforeMakingFolders,
    maxPixels: request.maxPixels,
    until: performance.now() + request.totalMs,
    signal: request.signal,
  });
  try {
    for await (const chunk of createReadStream(file)) await writer.write(chunk as Buffer);
    // A folder has no validators: a changed file is told by its hash.
    return writtenOutcome(await writer.finish(request.previousHash), { etag: null, lastModified: null });
  } catch (error) {
    await writer.discard();
    if (error instanceof DownloadError) return { kind: 'failed', failure: { reason: error.message, errorClass: error.errorClass, retryable: error.retryable } };
    const { code, path: failedPath } = error as NodeJS.ErrnoException;
    // Our originals store failing (full, read-only) while the copy is written: ours, as for an HTTP or S3 download.
    // It was `connection`, the source's, charged to the row; errors of the file read keep their source's classes.
    const store = storeErrorOf(error);
    if (store && failedPath !== file) return { kind: 'failed', failure: storeWriteFailure(store) };
    // No file of that name: none there (ENOENT), a folder there (EISDIR), or a file where the key has a folder
    // (ENOTDIR: `photo.jpg/x.jpg`). All are a key the folder lacks, as an S3 NoSuchKey is; as `connection` (the
    // source's passing fault) each was retried, and lis_imaged kept the row of every such key a request named.
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR')
      return { kind: 'failed', failure: { reason: `not found: ${file}${code === 'ENOENT' ? '' : ` (${code})`}`, errorClass: 'http_404', retryable: false } };
    return { kind: 'failed', failure: { reason: `cannot read ${file}: ${errorMessage(error)}`, errorClass: 'connection', retryable: true } };
  }
}
