// npm run build:wasm: compiles each src/**/*.wat to a *.wasm.ts beside it, the module's bytes as base64, so that
// the code loads it from src/ (tests through tsx) and from dist/ alike, with no compiler at run time or in
// production. The .wat is the source; the .wasm.ts is committed, and test/wasm-modules.test.ts fails when it no
// longer matches its .wat. wabt (a devDependency) is the WebAssembly project's own text-format assembler.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileWat, generatedModule, watFiles } from './wat-module.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
for (const wat of watFiles(path.join(root, 'src'))) {
  const bytes = await compileWat(wat);
  const target = wat.replace(/\.wat$/, '.wasm.ts');
  fs.writeFileSync(target, generatedModule(path.basename(wat), bytes));
  console.error(`${path.relative(root, target)}: ${bytes.length} bytes`);
}
