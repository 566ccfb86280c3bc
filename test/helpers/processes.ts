import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixtureBundle } from './fixture-bundles.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Spawned {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs a TypeScript entry point (or a bin/ file) as a real child process, collecting its output. `detached`: in a
 * process group of its own, as a terminal's foreground job is (Ctrl-C signals the whole group: `process.kill(-pid)`).
 */
export function spawnTs(file: string, args: string[], env: NodeJS.ProcessEnv = {}, input?: string, options: { detached?: boolean } = {}): Spawned {
  // A test that gives a config means its database: LIS_DATABASE_URL (the server the whole run uses,
  // which would override the config's url) is not passed on then.
  const inherited = { ...process.env };
  if (args.includes('--config') || env.LIS_CONFIG !== undefined) delete inherited.LIS_DATABASE_URL;
  // bin/* run the compiled code in dist/ as in production; a bundled fixture its bundle (fixture-bundles.ts); other
  // entry points are TypeScript, through tsx.
  const bundle = fixtureBundle(file);
  const loader = file.startsWith('bin/') || bundle ? [] : ['--import', 'tsx'];
  const child = spawn(process.execPath, [...loader, bundle ?? path.resolve(ROOT, file), ...args], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (out += chunk));
  if (input !== undefined) child.stdin.end(input);
  else child.stdin.end();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exited };
}

/** Polls until `check` is true, failing after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  // On the monotonic clock: a test that steps the wall clock (test/helpers/wall-clock.ts) waits as long.
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
