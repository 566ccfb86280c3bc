import { daemonMain } from '../daemon/daemon-main.ts';
import { createThumbnailWorker } from './thumbnail-worker.ts';

/** `lis_thumbnaild --country uk`: the runner every daemon shares, with the thumbnail stage. */
export async function thumbnaildMain(argv = process.argv): Promise<void> {
  await daemonMain(
    {
      command: 'lis_thumbnaild',
      component: 'thumbnaild',
      description: 'make the configured thumbnails of downloaded originals and move them on to pushing',
      create: ({ config, db }) => createThumbnailWorker({ config, db }),
    },
    argv,
  );
}
