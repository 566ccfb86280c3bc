import dns from 'node:dns';
import type http from 'node:http';
import type net from 'node:net';
import type { LookupFunction } from 'node:net';
import type { AddressPolicy } from '../net/address-policy.ts';
import { refusedAddress } from './download-error.ts';

type Resolve = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

/**
 * A DNS lookup for the sockets the downloader opens: it resolves as usual and
 * then drops every address the policy refuses (on `port`, when known), so the
 * socket can only connect to an allowed one whatever the DNS answer (and
 * however many redirects led here). When no address is left the connection
 * fails with `refused_address`. Node calls it for host names only; IP
 * literals are checked by the caller.
 */
export function safeLookup(policy: AddressPolicy, resolve: Resolve = dns.lookup, port: number | null = null): LookupFunction {
  return (hostname, options, callback) => {
    const wantsAll = Boolean(options.all);
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return void callback(error, '', 0);
      const allowed = addresses.filter((a) => policy.refusal(a.address, port) === null);
      if (allowed.length === 0) {
        const first = addresses[0];
        const error = first
          ? refusedAddress(first.address, policy.refusal(first.address, port)!, hostname)
          : Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' });
        return void callback(error, '', 0);
      }
      if (wantsAll) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, allowed);
      else callback(null, allowed[0].address, allowed[0].family);
    });
  };
}

type CreateConnection = (options: net.NetConnectOpts, callback?: () => void) => net.Socket;

/**
 * Makes an agent connect only where the policy allows: each new socket gets
 * a safe lookup that knows the port it is for, and once connected its peer
 * (address and port, whatever path led there) is checked again; a refused
 * peer's socket is destroyed with `refused_address` before a byte is sent.
 */
export function policeAgent<A extends http.Agent>(agent: A, policy: AddressPolicy, resolve: Resolve = dns.lookup): A {
  const target = agent as unknown as { createConnection: CreateConnection };
  const create = target.createConnection.bind(agent);
  target.createConnection = (options, callback) => {
    const port = Number((options as net.TcpNetConnectOpts).port ?? 80);
    const socket = create({ ...options, lookup: safeLookup(policy, resolve, port) }, callback);
    socket.once('connect', () => {
      const why = socket.remoteAddress ? policy.refusal(socket.remoteAddress, socket.remotePort ?? port) : 'no peer address';
      if (why) socket.destroy(refusedAddress(socket.remoteAddress ?? '?', why, (options as net.TcpNetConnectOpts).host));
    });
    return socket;
  };
  return agent;
}

/**
 * With a proxy the proxy resolves the name, so the check is ours, beforehand:
 * refused when ANY address of the name is refused on `port` (we cannot choose
 * which one the proxy will use). A DNS answer that changes in between is the
 * proxy's to police.
 */
export async function checkHostBeforeProxy(policy: AddressPolicy, hostname: string, port: number): Promise<void> {
  const addresses = await dns.promises.lookup(hostname, { all: true });
  for (const a of addresses) {
    const why = policy.refusal(a.address, port);
    if (why) throw refusedAddress(a.address, why, hostname);
  }
}
