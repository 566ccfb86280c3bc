import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Whether `user` may pass into `dir` (modes, ACLs, groups, every folder above it), asked of the system itself. */
function canTraverse(user: string, dir: string): boolean {
  try {
    execFileSync('setpriv', ['--reuid', user, '--regid', 'nogroup', '--clear-groups', 'test', '-x', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * As root, lets `user` pass through every folder down to `target` that is closed to it (an ACL entry granting
 * search, as the embedded server does for postgres), so that a test may run the checkout's bin/ as that user
 * wherever the checkout is (CI clones under /root, mode 710). Returns the undo: the same entries removed.
 */
export function openToUser(user: string, target: string): () => void {
  if (process.getuid?.() !== 0) return () => {};
  const opened: string[] = [];
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = path.sep + parts.slice(0, i).join(path.sep);
    if (canTraverse(user, dir)) continue;
    execFileSync('setfacl', ['-m', `u:${user}:x`, dir]);
    opened.push(dir);
  }
  return () => {
    for (const dir of opened.reverse()) execFileSync('setfacl', ['-x', `u:${user}`, dir]);
  };
}
