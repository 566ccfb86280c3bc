import type { Command } from 'commander';
import { parseCountry } from '../config/country.ts';
import { loadConfig } from '../config/load-config.ts';
import { withDatabase } from '../db/with-database.ts';
import { LisError, UsageError } from '../errors.ts';
import { isImageHash } from '../hash/image-hash.ts';
import { classifyByHuman, IMAGE_CLASSES, type ImageClass } from '../queue/classify-rows.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { configFileOf } from './global-options.ts';

/** `lis image classify HASH --country uk (--class photo|placeholder|tiny|duplicate | --auto)`: a human's word. */
export function addImageCommand(program: Command): void {
  const image = program.command('image').description('one image');
  image
    .command('classify <hash>')
    .description("set an image's class by hand (no stage overwrites it), or hand it back to the automatic rules with --auto")
    .requiredOption('--country <code>', 'the country')
    .option('--class <class>', `one of ${IMAGE_CLASSES.join(', ')}`)
    .option('--auto', 'hand the image back to the automatic classification')
    .action((hash: string, opts: { country: string; class?: string; auto?: boolean }, command: Command) =>
      runCommand(async () => {
        const config = loadConfig({ file: configFileOf(command) });
        const country = parseCountry(opts.country, config);
        if (!isImageHash(hash)) throw new UsageError(`not an image hash (32 lowercase hex digits): ${JSON.stringify(hash)}`);
        if ((opts.class === undefined) === !opts.auto) throw new UsageError('give exactly one of --class CLASS and --auto');
        if (opts.class !== undefined && !(IMAGE_CLASSES as readonly string[]).includes(opts.class)) {
          throw new UsageError(`--class ${JSON.stringify(opts.class)}: expected one of ${IMAGE_CLASSES.join(', ')}`);
        }
        return withDatabase(config, async (db) => {
          const found = await classifyByHuman(db, country, hash, opts.auto ? null : (opts.class as ImageClass));
          if (!found) throw new LisError('ERR_NO_IMAGE', `no image ${hash} in ${country}`);
          console.log(opts.auto ? `${hash}: classified automatically again (at its next thumbnailing)` : `${hash}: class ${opts.class}, set by hand`);
          return 0;
        });
      }),
    );
}
