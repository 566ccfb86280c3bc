import { LisError, errorMessage } from '../errors.ts';
import { mappedStack } from './mapped-stack.ts';

/**
 * The last word of every command: a known error prints its message and exits
 * 1 (2 for usage); anything else is a bug and prints its stack, naming the TypeScript (mappedStack).
 */
export async function runCommand(main: () => Promise<number | void> | number | void): Promise<void> {
  try {
    const code = await main();
    process.exitCode = code ?? 0;
  } catch (error) {
    if (error instanceof LisError) {
      process.stderr.write(`error: ${error.message}\n`);
      process.exitCode = error.code === 'ERR_USAGE' ? 2 : 1;
    } else {
      process.stderr.write(`error: ${error instanceof Error && error.stack ? mappedStack(error.stack) : errorMessage(error)}\n`);
      process.exitCode = 1;
    }
  }
}

/**
 * commander exits 1 on a flag it rejects (unknown, missing, not one of the
 * choices); we say 2 for every usage error, as the README promises, so that
 * scripts can tell "you called it wrong" from "it failed". --help stays 0.
 */
export function usageErrorsExit2<T extends { exitOverride(fn: (err: { exitCode: number }) => never): unknown }>(program: T): T {
  program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  return program;
}
