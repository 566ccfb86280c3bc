import type { Command } from 'commander';

/** The `--config <file>` that `lis` takes before any command (src/cli/lis.ts), as commander parsed it. */
export function configFileOf(command: Command): string | undefined {
  return command.optsWithGlobals<{ config?: string }>().config;
}
