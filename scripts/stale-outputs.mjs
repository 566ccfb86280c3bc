// The files under dist/ that no source makes any more: what tsc compiled from a file since deleted or renamed
// (its .js, .js.map, .d.ts), or a copied asset whose original is gone. tsc never deletes an output, even with
// `incremental`: a checkout built, then pulled, kept running and shipping (npm pack) the old module, and a
// renamed migration's old .js in dist/migrations would be run by the Migrator as a migration of its own.
import fs from 'node:fs';
import path from 'node:path';

/** What tsc writes for one `.ts` source. */
const COMPILED = ['.js', '.js.map', '.d.ts', '.d.ts.map'];

function* files(dir) {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else yield full;
  }
}

/**
 * The outputs under `root`/dist/<dir> (for each of `dirs`) with no source under `root`/<dir>: a compiled
 * file whose `.ts` is gone, or any other file (a copied asset) whose namesake is gone. Paths, sorted.
 */
export function staleOutputs(root, dirs) {
  const stale = [];
  for (const dir of dirs) {
    for (const output of files(path.join(root, 'dist', dir))) {
      const relative = path.relative(path.join(root, 'dist'), output);
      const suffix = COMPILED.find((s) => relative.endsWith(s));
      const sources = suffix ? [relative.slice(0, -suffix.length) + '.ts'] : [relative];
      if (!sources.some((source) => fs.existsSync(path.join(root, source)))) stale.push(output);
    }
  }
  return stale.sort();
}
