import type { LisConfig } from '../config/config-schema.ts';
import type { DownloadClient } from './download-client.ts';
import { fetchFileOriginal } from './fetch-file-original.ts';
import { fetchOriginal, type FetchOutcome, type FetchRequest } from './fetch-original.ts';
import { fetchS3Original, S3Clients } from './fetch-s3-original.ts';
import { S3_SCHEME } from '../net/s3-url.ts';

/**
 * Every scheme an `image_url` may have: http(s) through the download client
 * (address policy, proxy, redirects), `s3://bucket/key` through the S3 API
 * with the bucket's configured endpoint and credentials (imaged.s3), and
 * `file://` below a configured origin folder only. Never throws.
 */
export class SchemeFetcher {
  private readonly s3: S3Clients;
  private readonly folders: string[];

  constructor(
    private readonly client: DownloadClient,
    config: Pick<LisConfig, 'imaged' | 'download'>,
  ) {
    const { connectSeconds, firstByteSeconds } = config.download.timeouts;
    this.s3 = new S3Clients(config.imaged.s3, { connectMs: connectSeconds * 1000, firstByteMs: firstByteSeconds * 1000 }, client.uplink, client.wayOut);
    this.folders = Object.values(config.imaged.origins).flatMap((o) => o.sources.flatMap((s) => (s.type === 'folder' ? [s.dir] : [])));
  }

  fetch(request: FetchRequest): Promise<FetchOutcome> {
    if (S3_SCHEME.test(request.url)) return fetchS3Original(this.s3, request);
    if (request.url.startsWith('file://')) return fetchFileOriginal(this.folders, request);
    return fetchOriginal(this.client, request);
  }

  destroy(): void {
    this.s3.destroy();
  }
}
