import net from 'node:net';

export interface TcpRelay {
  port: number;
  /** The server going away: open connections reset, new ones refused. */
  cut(): Promise<void>;
  /** The server's host dropping packets: open connections reset, new ones accepted and never answered. */
  hang(): void;
}

/** A TCP relay on 127.0.0.1 to a real server (PostgreSQL), for outages a test can cause without stopping the server. */
export async function startTcpRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  const sockets = new Set<net.Socket>();
  let hanging = false;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (hanging) return;
    const upstream = net.connect(target.port, target.host);
    track(upstream);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      dropAll();
      await closed;
    },
    hang: () => {
      hanging = true;
      dropAll();
    },
  };
}
