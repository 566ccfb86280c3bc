import fs from 'node:fs';
import path from 'node:path';

/**
 * Every file below `<root>/<dir>` as paths relative to `root`, temp files of
 * interrupted writes included (they are garbage to clean up).
 */
export function listLocalFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const child = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) out.push(child);
    }
  };
  walk(dir);
  return out;
}

/** True when the file changed within `seconds`: possibly a write in progress, not to be judged yet. */
export function isRecent(file: string, seconds: number): boolean {
  try {
    return Date.now() - fs.statSync(file).mtimeMs < seconds * 1000;
  } catch {
    return false;
  }
}
