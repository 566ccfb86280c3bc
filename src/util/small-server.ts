import http from 'node:http';

/**
 * A small HTTP server of ours for a few readers (a daemon's /metrics and /health for Prometheus and probes; lis web
 * for operators), bounded so that whoever can reach it cannot starve the process of file descriptors: at most
 * `maxConnections` sockets at once (the rest are closed at once), and a request's headers within 10 s, checked every
 * second (node's defaults: no limit on sockets, and headers may take 60 s, checked every 30 s). Measured with node's
 * defaults, at systemd's 1,024 descriptors: 1,100 idle sockets opened to such a server, it held 1,003 and could open
 * no file (EMFILE), which in a daemon is no original, no thumbnail, no database connection; bounded at 32, it held 32
 * and opened files as before. Bound beyond loopback (metrics.host, for a Prometheus on another machine), that is
 * anyone on the network.
 */
export function createSmallServer(maxConnections: number, listener: http.RequestListener): http.Server {
  const server = http.createServer({ connectionsCheckingInterval: 1000, headersTimeout: 10_000, requestTimeout: 30_000 }, listener);
  server.maxConnections = maxConnections;
  return server;
}
