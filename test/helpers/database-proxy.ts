import net from 'node:net';
import { Transform } from 'node:stream';
import { freePort } from './free-port.ts';

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
  /**
   * The path going silent under open connections: no byte passes either way on them any more, and no reset
   * or close either (neither end learns of it); new connections are accepted and never answered.
   */
  stall(): void;
  /**
   * stall(), right after the first client bytes containing `text` (a statement's SQL, sent in its Parse)
   * have passed to the server: the server runs (and commits) it, its answer never comes back. Resolves then.
   */
  stallAfter(text: string): Promise<void>;
  /**
   * The path back for new connections. Those open during the stall stay silent for good, as connections whose
   * other end was lost meanwhile (a server that dropped them, its reset lost on the way): only a bound, a
   * check or a keepalive of the client's own ends them.
   */
  mend(): void;
  /**
   * From now on, client bytes containing `text` (a statement's SQL, in its Parse) wait `ms` before they pass to the
   * server, and the bytes after them behind them: a read that is slow to reach the server, its answer as quick.
   */
  delaySent(text: string, ms: number): void;
  /** From now on, counts the client bytes containing `text` (a statement's SQL, in its Parse): how many times it was sent. */
  countSent(text: string): () => number;
  /**
   * A server shutting down under a connection that was just answered: once client bytes containing `text` have
   * passed to the server, its answer goes back followed, in the same chunk, by the FATAL 57P01 a fast shutdown
   * sends every session ("terminating connection due to administrator command"), and the connection is closed.
   * Once, on the first connection that sends `text`.
   */
  terminateAfterReply(text: string): void;
  /**
   * stall(), right after the server's answer to the first client bytes containing `text` has passed back: the client
   * has its answer, and whatever it sends next (its goodbye included) is lost, as is any word of the server's. Resolves then.
   */
  stallAfterReply(text: string): Promise<void>;
}

/** The ErrorResponse a PostgreSQL backend sends as a fast shutdown ends its session. */
function adminShutdownMessage(): Buffer {
  const fields = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0', 'latin1');
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([head, fields]);
}

/** One proxied connection: `silent` once the path stalled under it. */
interface Link {
  silent: boolean;
  /** The server's next chunk is its last: followed by a FATAL 57P01, then the connection closed (terminateAfterReply). */
  terminateNext?: boolean;
  /** The path stalls once the server's next chunk has passed (stallAfterReply), which is then told. */
  stallAfterNext?: () => void;
}

export async function startDatabaseProxy(databaseUrl: string): Promise<DatabaseProxy> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  const links = new Set<Link>();
  let hanging = false;
  let stalled = false;
  let trigger: { text: string; fire: () => void } | null = null;
  let terminateText: string | null = null;
  let replyTrigger: { text: string; fire: () => void } | null = null;
  const counters: Array<{ text: string; n: number }> = [];
  const delays: Array<{ text: string; ms: number }> = [];
  const stall = () => {
    stalled = true;
    for (const link of links) link.silent = true;
  };
  /** The client's direction of a link: passes bytes until the link is silent (after any delaySent); `watch` sees each chunk passed. */
  const gate = (link: Link, watch?: (chunk: Buffer) => void) =>
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        const pass = () => {
          if (link.silent) return done();
          done(null, chunk);
          watch?.(chunk);
        };
        const delay = delays.find((d) => chunk.toString('latin1').includes(d.text));
        if (delay) setTimeout(pass, delay.ms);
        else pass();
      },
    });
  /** Ends `to` when `from` ends, unless the link went silent: a FIN does not cross a dead path either. */
  const forward = (from: Transform, to: net.Socket, link: Link) => {
    from.pipe(to, { end: false });
    from.on('end', () => link.silent || to.end());
  };
  // Half-open allowed: a socket of Node's otherwise answers the client's FIN (its goodbye) with one of its own at once,
  // which a dead path, or a frozen server, never sends; each direction's end is forwarded by hand (forward).
  const proxy = net.createServer({ allowHalfOpen: true }, (client) => {
    if (hanging || stalled) {
      sockets.add(client);
      client.on('error', () => {}).on('close', () => sockets.delete(client));
      return;
    }
    const upstream = net.connect({ port: Number(target.port || 5432), host: target.hostname, allowHalfOpen: true });
    const link: Link = { silent: false };
    links.add(link);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {}).on('close', () => {
        sockets.delete(s);
        links.delete(link);
      });
    }
    // The last bytes of the previous chunk, so that a statement split over two chunks is still seen.
    let tail = '';
    // Per counter, the end of the last chunk, so that a statement split over two chunks is counted once.
    const counted = new Map<{ text: string; n: number }, string>();
    const watch = (chunk: Buffer) => {
      for (const c of counters) {
        const text = (counted.get(c) ?? '') + chunk.toString('latin1');
        let end = 0;
        for (let at = text.indexOf(c.text); at !== -1; at = text.indexOf(c.text, end)) {
          c.n++;
          end = at + c.text.length;
        }
        // Kept: what could be the start of a match split over two chunks, never part of one counted.
        counted.set(c, text.slice(Math.max(end, text.length - c.text.length + 1)));
      }
      if (terminateText !== null && chunk.toString('latin1').includes(terminateText)) {
        terminateText = null;
        link.terminateNext = true;
      }
      if (replyTrigger !== null && chunk.toString('latin1').includes(replyTrigger.text)) {
        link.stallAfterNext = replyTrigger.fire;
        replyTrigger = null;
      }
      if (!trigger) return;
      const seen = tail + chunk.toString('latin1');
      tail = seen.slice(-trigger.text.length);
      if (!seen.includes(trigger.text)) return;
      const { fire } = trigger;
      trigger = null;
      stall();
      fire();
    };
    const up = gate(link, watch);
    const down = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (link.silent) return done();
        const stallNow = link.stallAfterNext;
        if (stallNow) {
          link.stallAfterNext = undefined;
          done(null, chunk);
          stall();
          return stallNow();
        }
        if (!link.terminateNext) return done(null, chunk);
        link.silent = true;
        done(null, Buffer.concat([chunk, adminShutdownMessage()]));
        setImmediate(() => {
          upstream.destroy();
          client.end();
        });
      },
    });
    client.pipe(up);
    forward(up, upstream, link);
    upstream.pipe(down);
    forward(down, client, link);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      proxy.once('error', reject);
      proxy.listen(port, '127.0.0.1', () => {
        proxy.off('error', reject);
        resolve();
      });
    });
  // A reserved port, not one the kernel picks (listen on 0): while cut(), the port must stay ours, for
  // restore() (and a test's own listener there) to bind it again and a client's connects to be refused.
  const port = await freePort();
  await listen(port);
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
    stall,
    stallAfter: (text) => new Promise<void>((resolve) => (trigger = { text, fire: resolve })),
    mend: () => {
      stalled = false;
    },
    terminateAfterReply: (text) => {
      terminateText = text;
    },
    stallAfterReply: (text) => new Promise<void>((resolve) => (replyTrigger = { text, fire: resolve })),
    delaySent: (text, ms) => {
      delays.push({ text, ms });
    },
    countSent: (text) => {
      const counter = { text, n: 0 };
      counters.push(counter);
      return () => counter.n;
    },
  };
}
