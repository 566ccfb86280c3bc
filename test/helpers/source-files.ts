import fs from 'node:fs';
import path from 'node:path';

/** Every source file under `dir` (TypeScript, JavaScript, SQL), as absolute paths. */
export function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|js|mjs|sql)$/.test(e.name) ? [full] : [];
  });
}
