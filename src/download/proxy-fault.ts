import type { DownloadFailure } from './classify-download-error.ts';

interface ErrorLike {
  message?: string;
  code?: string;
  syscall?: string;
  hostname?: string;
  event?: string;
  cause?: unknown;
}

/**
 * Pure: a download that failed because the configured proxy (`download.proxy`) could not be reached, as our
 * fault (`proxy_down`); null for anything else. Through a proxy every socket the downloader opens goes to the
 * proxy (the proxy connects to the image's server), so a failed TCP connect, a connect or lookup that timed out,
 * or the proxy's own name not resolving is the proxy's, whatever the URL. Before, they were the source's
 * `connection` or `dns`: with the proxy down, every row was charged and failed after queue.maxAttempts. What
 * the proxy answers (a 403, a 502 when it cannot reach the server) stays `proxy`, the source's (see README).
 */
export function proxyFault(error: unknown, proxy: URL): DownloadFailure | null {
  const proxyHost = proxy.hostname.replace(/^\[|\]$/g, '');
  for (let e = error as ErrorLike | undefined, depth = 0; e && typeof e === 'object' && depth < 10; e = e.cause as ErrorLike | undefined, depth++) {
    const connect = e.syscall === 'connect';
    const proxyName = e.syscall === 'getaddrinfo' && e.hostname === proxyHost;
    const timedOut = e.code === 'ETIMEDOUT' && (e.event === 'connect' || e.event === 'lookup');
    if (connect || proxyName || timedOut) {
      const words = timedOut ? `${e.event} timed out` : (e.message ?? String(e.code));
      return {
        reason: `proxy down: cannot reach download.proxy ${proxy.host} (${words}); not the image's fault`,
        errorClass: 'proxy_down',
        retryable: true,
      };
    }
  }
  return null;
}
