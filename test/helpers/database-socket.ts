import net from 'node:net';
import path from 'node:path';

/** The test database reached through a unix socket in `dir`, for a process in a network namespace of its own. */
export interface DatabaseSocket {
  /** A postgres URL through the socket (the file system is shared, the network is not). */
  url: string;
  close(): Promise<void>;
}

/**
 * Forwards a unix socket (`dir/.s.PGSQL.5432`, where libpq looks for it) to the database server of `databaseUrl`:
 * a process whose network namespace has no way to the test's server reaches its database so.
 */
export async function databaseSocket(databaseUrl: string, dir: string): Promise<DatabaseSocket> {
  const server = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  const forwarder = net.createServer((client) => {
    const upstream = net.connect(Number(server.port || 5432), server.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {}).on('close', () => (client.destroy(), upstream.destroy(), sockets.delete(s)));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => forwarder.listen(path.join(dir, '.s.PGSQL.5432'), resolve));
  return {
    url: `postgres://${server.username}:${server.password}@/${server.pathname.slice(1)}?host=${encodeURIComponent(dir)}&port=5432`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => forwarder.close(() => resolve()));
    },
  };
}
