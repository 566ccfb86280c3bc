import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import type { AddressPolicy } from './address-policy.ts';
import { refusedAddress } from './download-error.ts';

type Resolve = (hostname: string, options: dns.LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void) => void;

/**
 * A DNS lookup for the sockets the downloader opens: it resolves as usual and
 * then drops every address the policy refuses, so the socket can only connect
 * to an allowed one whatever the DNS answer (and however many redirects led
 * here). When no address is left the connection fails with `refused_address`.
 * Node calls it for host names only; IP literals are checked by the caller.
 */
export function safeLookup(policy: AddressPolicy, resolve: Resolve = dns.lookup): LookupFunction {
  return (hostname, options, callback) => {
    const wantsAll = Boolean((options as dns.LookupOptions).all);
    resolve(hostname, { ...(options as dns.LookupOptions), all: true }, (error, addresses) => {
      if (error) return void callback(error, '', 0);
      const allowed = addresses.filter((a) => policy.refusal(a.address) === null);
      if (allowed.length === 0) {
        const first = addresses[0];
        const error = first ? refusedAddress(first.address, policy.refusal(first.address)!, hostname) : Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' });
        return void callback(error as NodeJS.ErrnoException, '', 0);
      }
      if (wantsAll) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, allowed);
      else callback(null, allowed[0].address, allowed[0].family);
    });
  };
}

/**
 * With a proxy the proxy resolves the name, so the check is ours, beforehand:
 * refused when ANY address of the name is refused (we cannot choose which
 * one the proxy will use). A DNS answer that changes in between is the
 * proxy's to police.
 */
export async function checkHostBeforeProxy(policy: AddressPolicy, hostname: string): Promise<void> {
  const addresses = await dns.promises.lookup(hostname, { all: true });
  for (const a of addresses) {
    const why = policy.refusal(a.address);
    if (why) throw refusedAddress(a.address, why, hostname);
  }
}
