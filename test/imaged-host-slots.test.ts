// lis_imaged's fetches of originals under the downloader's per-host limits (HostSlots), against a real HTTP
// origin on loopback through the real SchemeFetcher.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config/load-config.ts';
import { createDownloadClient } from '../src/download/download-client.ts';
import { SchemeFetcher } from '../src/download/fetch-by-scheme.ts';
import type { FetchOutcome } from '../src/download/fetch-original.ts';
import { HostSlots } from '../src/imaged/host-slots.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg } from './helpers/imaged-fixtures.ts';
import { waitFor } from './helpers/processes.ts';

describe("lis_imaged's fetches under the per-host limits (HostSlots)", function () {
  this.timeout(30_000);
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** Three fetches of one host, one at a time: the first held at the origin, `/b.jpg` (left by `leave`) and `/c.jpg` behind it. */
  async function leftWhileQueued(how: 'unwanted' | 'signal'): Promise<void> {
    const picture = await photoJpeg(300, 200);
    const origin = await OriginServer.start(new Map(['/a.jpg', '/b.jpg', '/c.jpg'].map((p) => [p, picture])));
    closers.push(() => origin.close());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-host-slots-'));
    closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    // Timeouts well above the test's waits: the held fetch must still be running when the queued one is aborted.
    const config = parseConfig(
      {
        stores: { originals: path.join(dir, 'originals'), thumbnails: path.join(dir, 'thumbnails') },
        download: { ...TEST_DOWNLOAD, perHostConcurrency: 1, timeouts: { connectSeconds: 5, firstByteSeconds: 20, totalSeconds: 20 } },
      },
      {},
      dir,
    );
    const client = createDownloadClient(config.download);
    const fetcher = new SchemeFetcher(client, config);
    closers.push(() => (fetcher.destroy(), client.destroy()));
    const slots = new HostSlots(fetcher, config.download);
    const fetch = (p: string, stop?: AbortSignal) =>
      slots.fetch(
        {
          url: origin.url(p),
          destination: path.join(dir, p.slice(1)),
          maxBytes: 1_000_000,
          maxPixels: 1e8,
          totalMs: 20_000,
          ...(how === 'signal' && stop ? { signal: stop } : {}),
        },
        how === 'unwanted' ? stop : undefined,
      );

    origin.held.add('/a.jpg');
    const arrived = origin.arrival('/a.jpg');
    const first = fetch('/a.jpg');
    await arrived;
    // Two more for the same host wait behind it (one at a time to a host); the first of them is stopped.
    const stop = new AbortController();
    let aborted: FetchOutcome | null = null;
    void fetch('/b.jpg', stop.signal).then((outcome) => (aborted = outcome));
    const third = fetch('/c.jpg');
    assert.equal(slots.queued, 2);

    stop.abort();
    // While the first is still held: before, the aborted fetch waited for its turn all the same.
    await waitFor(() => aborted !== null, 5_000, 'the aborted fetch to leave its wait');
    assert.deepEqual(aborted, { kind: 'stopped' });
    assert.equal(slots.queued, 1, 'its place is freed; the third still waits');

    origin.release();
    assert.equal((await first).kind, 'stored');
    assert.equal((await third).kind, 'stored');
    assert.deepEqual([...origin.hits.keys()].sort(), ['/a.jpg', '/c.jpg'], 'the aborted fetch never reached the host');
  }

  it("a fetch whose generation nobody wants any more (its `unwanted` signal) leaves its wait for the host's turn at once, stopped, and never reaches the host; the others keep their turn", () =>
    leftWhileQueued('unwanted'));

  it("a fetch stopped by its own request.signal (fetchFromCandidates: another source won) leaves its wait for the host's turn at once, stopped, and never reaches the host", () =>
    leftWhileQueued('signal'));
});
