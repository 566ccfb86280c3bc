import fs from 'node:fs';
import type { Command } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { openDatabase } from '../db/connect.ts';
import { ProgressLine } from '../daemon/progress-line.ts';
import { LisError } from '../errors.ts';
import { enqueueUrlStream } from '../intake/enqueue-urls.ts';
import { runCommand } from './exit-on-error.ts';

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
        const config = loadConfig({ file: command.optsWithGlobals().config });
        const country = parseCountry(opts.country, config);
        const datasourceId = opts.datasource === undefined ? undefined : parseIntFlag('--datasource', opts.datasource, 0, 999_999_999);
        let input: NodeJS.ReadableStream;
        if (file === '-') input = process.stdin;
        else {
          if (!fs.existsSync(file)) throw new LisError('ERR_NO_FILE', `no such file: ${file}`);
          input = fs.createReadStream(file);
        }
        const db = await openDatabase(config);
        let shown = { done: 0, failed: 0 };
        const progress = new ProgressLine(process.stderr, () => shown, 'URLs queued or refreshed').start();
        try {
          const stats = await enqueueUrlStream(db, input as import('node:stream').Readable, {
            country,
            datasourceId,
            maxUrlLength: config.enqueue.maxUrlLength,
            batchSize: config.enqueue.batchSize,
            onBadLine: (n, reason) => process.stderr.write(`line ${n}: ${reason}\n`),
            onProgress: (s) => (shown = { done: s.inserted + s.refreshed, failed: s.bad }),
          });
          progress.stop();
          console.log(`${stats.inserted} new, ${stats.refreshed} already known (last_seen refreshed), ${stats.bad} bad lines skipped, ${stats.lines} lines read`);
          return 0;
        } finally {
          progress.stop();
          await db.destroy();
        }
      }),
    );
}
