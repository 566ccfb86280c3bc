import { Command } from 'commander';
import { usageErrorsExit2 } from './exit-on-error.ts';
import { PACKAGE_VERSION } from './package-root.ts';

/**
 * Every executable's top-level command: usage errors exit 2, and `--version` (`-V`) prints the installed
 * package's version, so that an operator can tell which release a host runs without finding its package.json.
 */
export function cliProgram(name: string): Command {
  return usageErrorsExit2(new Command(name)).version(PACKAGE_VERSION, '-V, --version', 'print the installed version of ImageSys');
}
