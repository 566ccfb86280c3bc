import fs from 'node:fs';

/**
 * The local ports of process `pid`'s TCP sockets, from /proc (Linux): the client ports its database sessions show
 * in pg_stat_activity. Empty when the process is gone. Read while the process is stopped (SIGSTOP), the list
 * cannot grow before the caller is done with it.
 */
export function tcpClientPorts(pid: number): number[] {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes = new Set<string>();
  for (const fd of fds) {
    try {
      const socket = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (socket) inodes.add(socket[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[];
    try {
      lines = fs.readFileSync(table, 'utf8').split('\n').slice(1);
    } catch {
      continue;
    }
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...; local_address is ADDR:PORT in hex.
    for (const line of lines) {
      const columns = line.trim().split(/\s+/);
      if (columns.length > 9 && inodes.has(columns[9])) ports.push(parseInt(columns[1].split(':').at(-1)!, 16));
    }
  }
  return ports;
}
