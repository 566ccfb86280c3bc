import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.ts';
import { parseIntFlag } from '../config/country.ts';
import { UsageError } from '../errors.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** Not a commander default: a string one shows as (default: "60"), as if it were a word (see lis refresh). */
const DEFAULT_PHOTOS = 60;

/** `lis demo`: the whole system, on this machine, in about a minute. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'run the whole system on this machine: the configured database server (--config, $LIS_CONFIG, ./imagesys.json; else the embedded one), a local photo server (with bad URLs), three local frontends, every daemon until the queue is drained; then a summary',
    )
    .option('--photos <n>', `how many photos (default: ${DEFAULT_PHOTOS})`)
    .option('--dir <folder>', 'where the demo keeps its stores, frontends and logs (emptied first)', './var/demo')
    .option('--database <name>', "the demo's own database on the server (dropped and made anew)", 'imagesys_demo')
    .action((opts: { photos?: string; dir: string; database: string }, command: Command) =>
      runCommand(async () => {
        if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.database))
          throw new UsageError(`--database ${JSON.stringify(opts.database)}: a lower-case name such as imagesys_demo`);
        const configFile = configFileOf(command);
        // Loaded for the demo only: its photos are made with sharp, whose load (libvips, ~0.2 s of CPU) every
        // other `lis` command paid at start when this import was static.
        const { runDemo } = await import('../demo/run-demo.ts');
        return runDemo({
          config: loadConfig({ file: configFile }),
          configFile,
          dir: opts.dir,
          photos: opts.photos === undefined ? DEFAULT_PHOTOS : parseIntFlag('--photos', opts.photos, 1, 100000),
          database: opts.database,
          print: (line) => console.log(line),
        });
      }),
    );
}
