// Layers that only look down: foundation -> queue -> daemon runner -> stages -> commands.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/processes.ts';
import { sourceFiles } from './helpers/source-files.ts';

/**
 * Each folder of src/ (and src/errors.ts) and its layer. A module may import
 * from its own layer and the layers below, never from one above: the queue
 * knows nothing of daemons, the daemon runner nothing of a stage, a stage
 * nothing of the commands that start it.
 */
export const LAYERS: Record<string, number> = {
  // 0, the foundation: errors, config, the database and its schema, stores, logs, alerts, pure helpers.
  errors: 0,
  util: 0,
  hash: 0,
  failure: 0,
  log: 0,
  config: 0,
  db: 0,
  store: 0,
  image: 0,
  net: 0,
  alerts: 0,
  // 1, the queue: every change of a row's queue state, and the intake that queues URLs through it.
  queue: 1,
  intake: 1,
  // 2, the daemon runner every daemon shares (its chunk loop, registry, signals, /metrics).
  daemon: 2,
  // 3, the stages and the daemons built on the runner.
  download: 3,
  thumbnail: 3,
  push: 3,
  manager: 3,
  cron: 3,
  imaged: 3,
  // 4, what people and listing code call: the CLI, the status page, reports, the Interface, the demo, servicectl.
  cli: 4,
  web: 4,
  metrics: 4,
  interface: 4,
  demo: 4,
  services: 4,
};

const SRC = path.join(ROOT, 'src');

/** The src/ folder a file belongs to (`errors` for src/errors.ts). */
const folderOf = (file: string) => path.relative(SRC, file).split(path.sep)[0].replace(/\.ts$/, '');

/** Every relative import of `text` (static, dynamic, type-only, re-export), as written. */
export function relativeImports(text: string): string[] {
  return [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.\.?\/[^'"]+)['"]/gm)].map((m) => m[1]);
}

/** `file -> import` for each import of a file that reaches a layer above its own (or a folder with no layer). */
export function upwardImports(file: string, text: string): string[] {
  const from = LAYERS[folderOf(file)];
  return relativeImports(text).flatMap((spec) => {
    const target = path.resolve(path.dirname(file), spec);
    if (!target.startsWith(SRC + path.sep)) return [];
    const to = LAYERS[folderOf(target)];
    const shown = `${path.relative(ROOT, file)} -> ${spec}`;
    if (from === undefined || to === undefined) return [`${shown} (a folder with no layer: add it to LAYERS)`];
    return to > from ? [`${shown} (layer ${from} imports layer ${to})`] : [];
  });
}

describe('layers', () => {
  it('no module of src/ imports from a layer above its own', () => {
    const offenders = sourceFiles(SRC).flatMap((f) => upwardImports(f, fs.readFileSync(f, 'utf8')));
    assert.deepEqual(offenders, [], 'move the shared part down a layer, or the importer up');
  });

  it('the scan sees every form of import, and the layers', () => {
    const file = path.join(SRC, 'queue', 'x.ts');
    const planted = [
      "import { runDaemon } from '../daemon/run-daemon.ts';",
      "import type { RunObserver } from '../daemon/run-daemon.ts';",
      "export { x } from '../cli/lis.ts';",
      "const m = await import('../thumbnail/make-thumbnails.ts');",
      "import '../web/status-server.ts';",
    ];
    for (const line of planted) assert.equal(upwardImports(file, line).length, 1, line);
    assert.deepEqual(upwardImports(file, "import { sql } from 'kysely';\nimport { createDb } from '../db/connect.ts';\nimport { x } from './y.ts';"), []);
    assert.equal(upwardImports(path.join(SRC, 'nowhere', 'x.ts'), "import { a } from '../db/connect.ts';").length, 1, 'an unknown folder is named');
  });
});
