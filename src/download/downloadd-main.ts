import { daemonMain } from '../daemon/daemon-main.ts';
import { DownloadWorker } from './download-worker.ts';

/** lis_downloadd: the shared daemon life around the download stage. */
export async function downloaddMain(argv = process.argv): Promise<void> {
  await daemonMain(
    {
      command: 'lis_downloadd',
      component: 'downloadd',
      description: 'download waiting originals into the originals store, then queue them for thumbnailing',
      extraOptions: (command) => command.option('--noproxy', 'connect directly, ignoring download.proxy'),
      create: ({ config, db, log, country, flags }) => {
        const worker = new DownloadWorker(config, db, country, { noproxy: Boolean(flags.noproxy) });
        log.info(
          `Downloading with ${config.download.concurrency} at once, ${config.download.perHostConcurrency} per host${worker.proxied ? `, through proxy ${new URL(config.download.proxy!).host}` : ''}`,
          { scope: 'Download::start' },
        );
        return worker;
      },
    },
    argv,
  );
}
