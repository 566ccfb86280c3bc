import fs from 'node:fs';

/** The pids whose parent is `pid` (from /proc: a server's backends and helpers). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so read after the last ')'.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/**
 * A PostgreSQL server frozen as a stopped process or a hung host leaves it: every process of it stopped
 * (SIGSTOP), the postmaster first so that it starts no new one. Its kernel still accepts connections and
 * answers TCP keepalive; nothing answers a query. Only ever a server of the test's own, never the shared one.
 * `resume()` (idempotent) lets them all run again.
 */
export function freezeServer(postmasterPid: number): { resume: () => void } {
  process.kill(postmasterPid, 'SIGSTOP');
  const stopped = [postmasterPid, ...childrenOf(postmasterPid)];
  for (const pid of stopped.slice(1)) process.kill(pid, 'SIGSTOP');
  let resumed = false;
  return {
    resume: () => {
      if (resumed) return;
      resumed = true;
      for (const pid of stopped.reverse()) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone meanwhile
        }
      }
    },
  };
}
