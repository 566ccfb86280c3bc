// npm test's static checks: the type check (`npm run typecheck`) and the lint (`npm run lint`: eslint, then
// prettier), the same three commands, run side by side rather than one after another. Each is mostly one core
// (eslint alone 36 s, tsc 14 s, prettier 14 s one after another in CI on 2 cores); each one's output is printed
// whole as it ends, and the run fails if any failed.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The executables npm runs for the scripts (node_modules/.bin), under this Node. */
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

const CHECKS = [
  { name: 'tsc -p .', bin: bin('tsc'), args: ['-p', '.'] },
  { name: 'eslint .', bin: bin('eslint'), args: ['.'] },
  { name: 'prettier --check .', bin: bin('prettier'), args: ['--check', '.'] },
];

function run({ name, bin, args }) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    child.on('error', (error) => (out += `${error.message}\n`));
    child.on('close', (code, signal) => {
      const ok = code === 0;
      process.stdout.write(`${ok ? 'passed' : 'FAILED'}: ${name}${ok ? '' : ` (exit ${code ?? signal})`}\n${out}`);
      resolve(ok);
    });
  });
}

const results = await Promise.all(CHECKS.map(run));
if (results.includes(false)) process.exit(1);
