import { Command } from 'commander';
import { addDbCommand } from './db-command.ts';
import { addEnqueueCommand } from './enqueue-command.ts';
import { addConfigCommand } from './config-command.ts';

/** `lis`: every command that is not a daemon. */
const program = new Command('lis')
  .description('ImageSys: listing photos downloaded, thumbnailed and pushed to the frontends')
  .option('--config <file>', 'config file (default: $LIS_CONFIG, else ./imagesys.json, else built-in defaults)')
  .showHelpAfterError();

addDbCommand(program);
addEnqueueCommand(program);
addConfigCommand(program);

await program.parseAsync(process.argv);
