import fs from 'node:fs';
import path from 'node:path';

/**
 * True when every folder of `rel` below `root` is a real folder, not a
 * symbolic link (a missing one counts as real: there is nothing to follow).
 */
function realFoldersBelow(root: string, rel: string): boolean {
  const parts = rel.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    try {
      if (fs.lstatSync(path.join(root, ...parts.slice(0, i))).isSymbolicLink()) return false;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw error;
    }
  }
  return true;
}

/**
 * True when `<root>/<rel>` is a regular file reached through real folders
 * only: what may be deleted without following a link out of `root`.
 */
export function isPlainFileBelow(root: string, rel: string): boolean {
  const parent = rel.split('/').slice(0, -1).join('/');
  if (!realFoldersBelow(root, parent)) return false;
  try {
    return fs.lstatSync(path.join(root, rel)).isFile();
  } catch {
    return false;
  }
}

/**
 * Every file below `<root>/<dir>` as paths relative to `root`, temp files of
 * interrupted writes included (they are garbage to clean up). Symbolic links
 * are never followed, neither on the way to `dir` nor below it: whatever they
 * point at is not ours.
 */
export function listLocalFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  if (!realFoldersBelow(root, dir)) return out;
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
