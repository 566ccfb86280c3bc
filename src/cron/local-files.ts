import fs from 'node:fs';
import path from 'node:path';

/**
 * The first folder of `rel` below `root` (as a path relative to `root`) that is a symbolic link, or null
 * when all are real folders (a missing one counts as real: there is nothing to follow).
 */
function linkedFolderOf(root: string, rel: string): string | null {
  const parts = rel.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    try {
      if (fs.lstatSync(path.join(root, ...parts.slice(0, i))).isSymbolicLink()) return parts.slice(0, i).join('/');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }
  return null;
}

function realFoldersBelow(root: string, rel: string): boolean {
  return linkedFolderOf(root, rel) === null;
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

/** What a walk found: files, and the symbolic links it did not follow (both relative to the root). */
export interface LocalTree {
  files: string[];
  /** `dir` itself or a folder on the way to it when that is a link (then nothing was walked), else links met below it. */
  links: string[];
}

/**
 * Every file below `<root>/<dir>` as paths relative to `root`, temp files of
 * interrupted writes included (they are garbage to clean up), and the links
 * met. Symbolic links are never followed, neither on the way to `dir` nor
 * below it: whatever they point at is not ours. The links are reported so that
 * what lies behind them is not judged missing either (we cannot see it).
 */
export function walkLocalTree(root: string, dir: string): LocalTree {
  const out: LocalTree = { files: [], links: [] };
  const linked = linkedFolderOf(root, dir);
  if (linked !== null) return { files: [], links: [linked] };
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
      else if (entry.isFile()) out.files.push(child);
      else if (entry.isSymbolicLink()) out.links.push(child);
    }
  };
  walk(dir);
  return out;
}

/** Pure: true when `file` lies at or below one of `links` (so it could not be seen). */
export function behindLink(file: string, links: readonly string[]): boolean {
  return links.some((l) => file === l || file.startsWith(`${l}/`));
}

/**
 * True when the file changed within `seconds` before `now` (ms; this host's clock unless given: a file a frontend's
 * rsync wrote carries the clock of the machine whose disk it is): possibly a write in progress, not to be judged yet.
 */
export function isRecent(file: string, seconds: number, now = Date.now()): boolean {
  try {
    return now - fs.statSync(file).mtimeMs < seconds * 1000;
  } catch {
    return false;
  }
}
