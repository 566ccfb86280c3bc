import path from 'node:path';
import { parseArgs } from 'node:util';

/**
 * A bench's command line, read by the options it declares (`benchOptions`, first thing in each bench): `--help` lists
 * them; an option the bench does not take, one without its value, or a number that is not one stops it (exit 2)
 * before any work. Before, they were passed over in silence and the bench ran on its defaults: `--row 100000`, a
 * slip for `--rows`, printed the figures of a million-row run as if they were the ones asked for.
 */
let parsed: Record<string, string | boolean | undefined> | null = null;
const declared = new Set<string>();
let usage = '';

/**
 * Declares the bench's options (name: the value's placeholder, such as `N` or `FILE`, or null for a switch) and
 * reads the command line by them. `--config FILE` (benchConfig) and `--help` are every bench's.
 */
export function benchOptions(options: Record<string, string | null>): void {
  const all: Record<string, string | null> = { ...options, config: 'FILE' };
  for (const name of Object.keys(all)) declared.add(name);
  usage = `usage: ${path.relative(process.cwd(), process.argv[1] ?? 'bench')} ${Object.entries(all)
    .map(([name, value]) => `[--${name}${value ? ` ${value}` : ''}]`)
    .join(' ')}`;
  const types: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const [name, value] of Object.entries(all)) types[name] = { type: value ? 'string' : 'boolean' };
  try {
    parsed = parseArgs({ options: types, strict: true, allowPositionals: false }).values;
  } catch (error) {
    refuse((error as Error).message);
  }
  if (parsed?.help) {
    console.log(usage);
    process.exit(0);
  }
}

/** Stops the bench before any work (exit 2), saying why and how it is called: a value it cannot use. */
export function refuse(message: string): never {
  console.error(`bench: ${message.split('. To specify a positional')[0]}\n${usage}`);
  process.exit(2);
}

function values(name: string): Record<string, string | boolean | undefined> {
  if (parsed === null) throw new Error(`bench: --${name} read before benchOptions() declared the options`);
  if (!declared.has(name)) throw new Error(`bench: --${name} is not among the options benchOptions() declared`);
  return parsed;
}

/** A `--name value` argument, or undefined. */
export function argOf(name: string): string | undefined {
  const value = values(name)[name];
  return typeof value === 'string' ? value : undefined;
}

/** A switch (`--name`), given or not. */
export function hasSwitch(name: string): boolean {
  return values(name)[name] === true;
}

/** A `--name N` argument as a number, or `fallback`; a value that is not a number stops the bench (exit 2). */
export function flag(name: string, fallback: number): number {
  const value = argOf(name);
  if (value === undefined) return fallback;
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) refuse(`--${name} takes a number, not ${JSON.stringify(value)}`);
  return number;
}
