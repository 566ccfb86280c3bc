// Start-up of each executable: its bundle (`node bin/<name> --help`, what production runs) against the module tree
// it is bundled from (dist/src/, run through a shim that imports the executable's first module and calls its main),
// interleaved (tree, bundle, tree, bundle...), --runs of each. User+system CPU and peak RSS of each child, from
// /usr/bin/time (Debian's `time` package); the median per side, and `ratio startup_<name>` (the tree's CPU over the
// bundle's: above 1, the bundle starts cheaper), then their geometric mean. No database is used.
// `--against DIR`: instead, each bundle against the same executable of another built checkout (an earlier commit's,
// `git worktree add` and `npm ci` or a link to this node_modules, then `npm run build` there), interleaved: what a
// change bought at start-up, `ratio startup_against_<name>` (the other's CPU over this one's: above 1, this starts
// cheaper).
//   node --import tsx bench/startup.ts [--runs 7] [--against DIR]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { argOf, benchOptions, flag, refuse } from './lib/bench-args.ts';
import { printRatio } from './lib/bench-database.ts';

benchOptions({ runs: 'N', against: 'DIR' });

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TIME = '/usr/bin/time';
const runs = flag('runs', 7);
const against = argOf('against');
if (against !== undefined && !fs.existsSync(path.join(against, 'dist', 'bin')))
  refuse(`--against ${against}: no built executables there (dist/bin/): run npm run build in that checkout first`);
if (!fs.existsSync(TIME)) throw new Error(`bench: ${TIME} is needed to read a child's CPU and peak RSS (apt-get install time)`);
const executablesModule = pathToFileURL(path.join(ROOT, 'scripts', 'executables.mjs')).href;
const { EXECUTABLES } = (await import(executablesModule)) as { EXECUTABLES: Record<string, string> };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-bench-startup-'));
try {
  /** One child's user+system CPU (s) and peak RSS (MB), its output discarded. */
  const measure = (args: string[]): { cpu: number; rssMb: number } => {
    const out = path.join(dir, 'time.txt');
    execFileSync(TIME, ['-o', out, '-f', '%U %S %M', process.execPath, ...args], { stdio: 'ignore', timeout: 60_000 });
    const [user, system, rssKb] = fs.readFileSync(out, 'utf8').trim().split(/\s+/).map(Number);
    return { cpu: user + system, rssMb: rssKb / 1024 };
  };
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `${Object.keys(EXECUTABLES).length} executables, ${runs} runs of each side, interleaved${against !== undefined ? `, against ${path.resolve(against)}` : ''}; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
  );
  const baseName = against !== undefined ? 'the other checkout' : 'module tree';
  const prefix = against !== undefined ? 'startup_against' : 'startup';
  const ratios: number[] = [];
  const compared: string[] = [];
  for (const [name, module] of Object.entries(EXECUTABLES)) {
    // The baseline: the other checkout's bundle of the same executable, or else the module tree as bin/<name> ran it
    // before the bundles (import the first module, call its main if it has one).
    let baseline: string;
    if (against !== undefined) {
      baseline = path.join(path.resolve(against), 'bin', name);
      // An executable the other checkout does not have yet: nothing to compare it with.
      if (!fs.existsSync(baseline)) {
        console.log(`${name.padEnd(18)} not in ${against}: left out`);
        continue;
      }
    } else {
      baseline = path.join(dir, `${name}.mjs`);
      fs.writeFileSync(
        baseline,
        `const m = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, module)).href)});\n` +
          `const main = Object.values(m).find((v) => typeof v === 'function' && v.name.endsWith('Main'));\n` +
          `if (main) await main();\n`,
      );
    }
    const base: { cpu: number; rssMb: number }[] = [];
    const bundle: { cpu: number; rssMb: number }[] = [];
    for (let i = 0; i < runs; i++) {
      base.push(measure([baseline, '--help']));
      bundle.push(measure([path.join(ROOT, 'bin', name), '--help']));
    }
    const t = { cpu: median(base.map((r) => r.cpu)), rss: median(base.map((r) => r.rssMb)) };
    const b = { cpu: median(bundle.map((r) => r.cpu)), rss: median(bundle.map((r) => r.rssMb)) };
    console.log(`${name.padEnd(18)} ${baseName} ${t.cpu.toFixed(2)} s ${t.rss.toFixed(0)} MB | bundle ${b.cpu.toFixed(2)} s ${b.rss.toFixed(0)} MB`);
    ratios.push(t.cpu / b.cpu);
    compared.push(name);
  }
  compared.forEach((name, i) => printRatio(`${prefix}_${name}`, ratios[i]));
  printRatio(`${prefix}_geomean`, Math.exp(ratios.reduce((sum, r) => sum + Math.log(r), 0) / ratios.length));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
