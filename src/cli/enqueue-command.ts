import fs from 'node:fs';
import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { ProgressLine } from '../daemon/progress-line.ts';
import { LisError, UsageError, errorMessage } from '../errors.ts';
import { EnqueueIncompleteError, enqueueUrlStream, type EnqueueStats } from '../intake/enqueue-urls.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { configFileOf } from './global-options.ts';

const summary = (s: EnqueueStats) => `${s.inserted} new, ${s.refreshed} already known (last_seen refreshed), ${s.bad} bad lines skipped, ${s.lines} lines read`;

/**
 * The file of URLs, opened now: a folder, an unreadable file or a missing one is
 * said in one line (ERR_NO_FILE) before the database is touched, not left to
 * surface mid-read as an unclassified error.
 */
function openInput(file: string): fs.ReadStream {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new LisError('ERR_NO_FILE', code === 'ENOENT' ? `no such file: ${file}` : `cannot read ${file}: ${code ?? errorMessage(error)}`);
  }
  if (fs.fstatSync(fd).isDirectory()) {
    fs.closeSync(fd);
    throw new LisError('ERR_NO_FILE', `${file} is a folder: give a file of URLs, or - for standard input`);
  }
  return fs.createReadStream(file, { fd });
}

/** `lis enqueue --country uk --datasource 16 [FILE|-]`: the ETL's way in. */
export function addEnqueueCommand(program: Command): void {
  program
    .command('enqueue')
    .description('queue image URLs, one per line (or DATASOURCE<TAB>URL); known URLs only get last_seen refreshed')
    .requiredOption('--country <code>', 'the country the URLs belong to')
    .option('--datasource <id>', 'datasource of lines that do not name one')
    .argument('[file]', 'file of URLs, or - for standard input', '-')
    .action((file: string, opts: { country: string; datasource?: string }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = parseCountry(opts.country, config);
        const datasourceId = opts.datasource === undefined ? undefined : parseIntFlag('--datasource', opts.datasource, 0, 999_999_999);
        let input: NodeJS.ReadableStream;
        if (file === '-') input = process.stdin;
        else input = openInput(file);
        return withDatabase(config, async (db) => {
          let shown = { done: 0, failed: 0 };
          const progress = new ProgressLine(process.stderr, () => shown, 'URLs queued or refreshed').start();
          try {
            let stats: EnqueueStats;
            try {
              stats = await enqueueUrlStream(db, input as import('node:stream').Readable, {
                country,
                datasourceId,
                maxUrlLength: config.enqueue.maxUrlLength,
                batchSize: config.enqueue.batchSize,
                // A reason quotes its URL: its password (userinfo) is not for the terminal or a cron mail.
                onBadLine: (n, reason) => process.stderr.write(`line ${n}: ${maskUrlPasswords(reason)}\n`),
                onProgress: (s) => (shown = { done: s.inserted + s.refreshed, failed: s.bad }),
              });
            } catch (error) {
              progress.stop();
              if (error instanceof EnqueueIncompleteError) console.log(summary(error.stats));
              throw error;
            }
            progress.stop();
            console.log(summary(stats));
            if (stats.inserted + stats.refreshed === 0 && stats.noDatasource > 0) {
              throw new UsageError(`nothing stored: ${stats.noDatasource} lines name no datasource; give --datasource or DATASOURCE<TAB>URL lines`);
            }
            return 0;
          } finally {
            progress.stop();
          }
        });
      }),
    );
}
