import type { Server } from 'node:net';
import { LisError } from '../errors.ts';

/** What an operator can do about each way a bind fails; other codes are passed on as they are. */
const WHY: Record<string, string> = {
  EADDRINUSE: 'the port is already in use (another process listens there: stop it, or pick another port; 0 picks a free one)',
  EACCES: 'permission denied (ports below 1024 need root)',
  EADDRNOTAVAIL: 'this machine has no such address',
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'the host name could not be resolved now',
};

/**
 * Listens, or throws LisError ERR_LISTEN naming who could not listen where and
 * why. A taken port or a mistyped host is an operator's mistake, not a bug:
 * it must read as one line (`lis web cannot listen on 127.0.0.1:8470: the port
 * is already in use ...`), never as a stack trace.
 */
export async function listenOrExplain(server: Server, port: number, host: string, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const code = error.code ?? 'error';
      reject(new LisError('ERR_LISTEN', `${what} cannot listen on ${host}:${port}: ${code}: ${WHY[code] ?? error.message}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
