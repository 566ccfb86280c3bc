// npm run docs:config: rewrites the configuration reference in README.md from the zod schema
// (src/config/config-reference.ts); test/config-reference.test.ts fails when the README differs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withConfigReference } from '../src/config/config-reference.ts';

const readme = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../README.md');
const before = fs.readFileSync(readme, 'utf8');
const after = withConfigReference(before);
fs.writeFileSync(readme, after);
console.log(before === after ? 'README.md: configuration reference already current' : 'README.md: configuration reference rewritten');
