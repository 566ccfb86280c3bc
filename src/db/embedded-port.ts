import net from 'node:net';
import { LisError } from '../errors.ts';

/**
 * ERR_EMBEDDED_PORT_IN_USE: the embedded server's port (database.embedded.port) is taken by another program.
 * PostgreSQL's own words ("could not bind IPv4 address: Address already in use ... Is another postmaster
 * already running on port 54329?") name neither our setting nor the way out.
 */
export function portInUseError(port: number): LisError {
  return new LisError(
    'ERR_EMBEDDED_PORT_IN_USE',
    `the embedded PostgreSQL cannot listen on 127.0.0.1:${port} (database.embedded.port): the port is in use by another program. ` +
      `Stop that program, or choose another port: set database.embedded.port in the config ` +
      `(e.g. {"database": {"embedded": {"port": ${port === 65535 ? port - 1 : port + 1}}}}); ` +
      `or, if a PostgreSQL server of your own listens there, use it: set LIS_DATABASE_URL (or database.url) to its URL`,
  );
}

/** PostgreSQL's line in its log for a port in use. */
export const PORT_IN_USE_LOG = /could not bind IPv[46] address .*Address already in use/;

/** Whether something listens on 127.0.0.1:`port` (a bind there fails with EADDRINUSE); any other refusal is no. */
export async function portInUse(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise<boolean>((resolve) => {
    // Any other refusal (a port below 1024 as another user than root) is left to the server to report.
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE'));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/**
 * Throws ERR_EMBEDDED_PORT_IN_USE when something listens on 127.0.0.1:`port` already, before the server is
 * started (or initialised) in vain. A program that takes the port between this and the server's own bind
 * is caught from the server's log (PORT_IN_USE_LOG).
 */
export async function assertPortFree(port: number): Promise<void> {
  if (await portInUse(port)) throw portInUseError(port);
}
