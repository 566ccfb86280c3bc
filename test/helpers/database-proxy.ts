import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of the test's database server, so that a test can cause outages
 * without touching the shared server.
 */
export interface DatabaseProxy {
  /** The database URL through the proxy. */
  url: string;
  port: number;
  /** The server going away: open connections reset, new ones refused. */
  cut(): Promise<void>;
  /** The server back: listening again on the same port. */
  restore(): Promise<void>;
  /** The server's host dropping packets: open connections reset, new ones accepted and never answered. */
  hang(): void;
}

export async function startDatabaseProxy(databaseUrl: string): Promise<DatabaseProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  let hanging = false;
  const proxy = net.createServer((client) => {
    if (hanging) {
      sockets.add(client);
      client.on('error', () => {}).on('close', () => sockets.delete(client));
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {}).on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      proxy.once('error', reject);
      proxy.listen(port, '127.0.0.1', () => {
        proxy.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (proxy.address() as net.AddressInfo).port;
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    cut: () =>
      new Promise<void>((resolve) => {
        if (!proxy.listening) resolve();
        else proxy.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
    restore: () => listen(port),
    hang: () => {
      hanging = true;
      for (const s of sockets) s.destroy();
    },
  };
}
