import net from 'node:net';

/** What a route gets: the socket to write raw HTTP to, the request head, and how many requests this connection served before. */
export type RawHandler = (socket: net.Socket, request: { head: string; path: string; served: number }) => void;

export interface HostileServer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  port: number;
  /** Every request line received, in order (what the downloader really asked for). */
  received: string[];
  close(): Promise<void>;
}

/** A raw response head: `head('200 OK', { 'content-length': 3 })`. */
export function rawHead(status: string, headers: Record<string, string | number> = {}): string {
  return `HTTP/1.1 ${status}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

/**
 * A hostile HTTP/1.1 server on 127.0.0.1 that writes raw bytes, so it can
 * break HTTP in ways node:http will not (close at will, lie, stall). Routes
 * are matched on the path without query; an unknown path is a 404.
 * Keep-alive is the client's to assume: a route decides when to close.
 */
export async function startHostileServer(routes: Record<string, RawHandler>): Promise<HostileServer> {
  const sockets = new Set<net.Socket>();
  const received: string[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    let served = 0;
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const line = head.split('\r\n')[0];
        received.push(line);
        const path = (line.split(' ')[1] ?? '').split('?')[0];
        const handler = routes[path] ?? ((s) => s.write(rawHead('404 Not Found', { 'content-length': 0 })));
        handler(socket, { head, path, served: served++ });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    received,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
