import { LisError, errorMessage } from '../errors.ts';

/**
 * The last word of every command: a known error prints its message and exits
 * 1 (2 for usage); anything else is a bug and prints its stack.
 */
export async function runCommand(main: () => Promise<number | void>): Promise<void> {
  try {
    const code = await main();
    process.exitCode = code ?? 0;
  } catch (error) {
    if (error instanceof LisError) {
      process.stderr.write(`error: ${error.message}\n`);
      process.exitCode = error.code === 'ERR_USAGE' ? 2 : 1;
    } else {
      process.stderr.write(`error: ${error instanceof Error ? error.stack : errorMessage(error)}\n`);
      process.exitCode = 1;
    }
  }
}
