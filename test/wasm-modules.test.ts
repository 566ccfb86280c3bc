import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileWat, generatedModule, watFiles } from '../scripts/wat-module.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('WebAssembly modules', () => {
  it('each committed *.wasm.ts is what its .wat compiles to (npm run build:wasm), and V8 takes it', async function () {
    this.timeout(30_000);
    const wats = [...watFiles(path.join(root, 'src'))];
    assert.ok(wats.length > 0, 'src/ has .wat sources');
    for (const wat of wats) {
      const bytes = await compileWat(wat);
      const committed = fs.readFileSync(wat.replace(/\.wat$/, '.wasm.ts'), 'utf8');
      assert.equal(committed, generatedModule(path.basename(wat), bytes), `${path.relative(root, wat)}: run npm run build:wasm`);
      assert.ok(WebAssembly.validate(new Uint8Array(bytes)), path.relative(root, wat));
    }
  });
});
