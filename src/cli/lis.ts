import { addDbCommand } from './db-command.ts';
import { cliProgram } from '../util/cli-program.ts';
import { addEnqueueCommand } from './enqueue-command.ts';
import { addConfigCommand } from './config-command.ts';
import { addRefreshCommand } from './refresh-command.ts';
import { addFrontendCommand } from './frontend-command.ts';
import { addDatasourceCommand } from './datasource-command.ts';
import { addDatasourceSwitchCommands } from './datasource-switch-command.ts';
import { addRetryCommand } from './retry-command.ts';
import { addWorkerReportCommand } from './worker-report-command.ts';
import { addWebCommand } from './web-command.ts';
import { addDemoCommand } from './demo-command.ts';
import { addImageCommand } from './image-command.ts';
import { addRethumbnailCommand } from './rethumbnail-command.ts';
import { addHostCommand } from './host-command.ts';

/** `lis`: every command that is not a daemon. */
const program = cliProgram('lis')
  .description('ImageSys: listing photos downloaded, thumbnailed and pushed to the frontends')
  .option('--config <file>', 'config file (default: $LIS_CONFIG, else ./imagesys.json, else built-in defaults)')
  .showHelpAfterError();

addDbCommand(program);
addEnqueueCommand(program);
addConfigCommand(program);
addRefreshCommand(program);
addRethumbnailCommand(program);
addImageCommand(program);
addFrontendCommand(program);
addDatasourceSwitchCommands(addDatasourceCommand(program));
addRetryCommand(program);
addWorkerReportCommand(program);
addHostCommand(program);
addWebCommand(program);
addDemoCommand(program);

await program.parseAsync(process.argv);
