import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../src/config/load-config.ts';
import { addressPolicy, parseAllowEntry, parseIp } from '../src/net/address-policy.ts';
import { classifyDownloadError } from '../src/download/classify-download-error.ts';
import { createDownloadClient } from '../src/download/download-client.ts';
import { safeLookup } from '../src/download/safe-lookup.ts';

describe('the downloader address policy', () => {
  const strict = addressPolicy([]);

  it('refuses loopback, private, link-local, CGNAT, multicast, reserved and unspecified addresses', () => {
    const cases: Array<[string, string]> = [
      ['127.0.0.1', 'loopback'],
      ['127.9.9.9', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'CGNAT'],
      ['100.127.255.255', 'CGNAT'],
      ['224.0.0.1', 'multicast'],
      ['239.255.255.250', 'multicast'],
      ['0.0.0.0', 'this network'],
      ['255.255.255.255', 'broadcast'],
      ['192.0.2.1', 'reserved'],
      ['198.18.0.1', 'reserved'],
      ['240.0.0.1', 'reserved'],
      ['::1', 'loopback'],
      ['::', 'this network'],
      ['[::1]', 'loopback'],
      ['fd12:3456::1', 'private'],
      ['fe80::1%eth0', 'link-local'],
      ['ff02::1', 'multicast'],
      ['fec0::1', 'site-local'],
      ['2001:db8::1', 'reserved'],
    ];
    for (const [address, why] of cases) assert.equal(strict.refusal(address, 80), why, address);
  });

  it('refuses every IPv6 form that carries a refused IPv4 address, and lets those carrying public ones through', () => {
    const refused: Array<[string, string]> = [
      // Never in a sane DNS answer: refused whatever they carry.
      ['::ffff:127.0.0.1', 'IPv4-mapped'],
      ['::ffff:7f00:1', 'IPv4-mapped'],
      ['::ffff:8.8.8.8', 'IPv4-mapped'],
      ['::127.0.0.1', 'IPv4-compatible'],
      ['::8.8.8.8', 'IPv4-compatible'],
      ['::ffff:0:7f00:1', 'IPv4-translated'],
      // NAT64, both prefixes.
      ['64:ff9b::127.0.0.1', 'NAT64 of loopback 127.0.0.1'],
      ['64:ff9b::a00:1', 'NAT64 of private 10.0.0.1'],
      ['64:ff9b::a9fe:a9fe', 'NAT64 of link-local 169.254.169.254'],
      ['64:ff9b:1::7f00:1', 'NAT64 of loopback 127.0.0.1'], // the local-use prefix cut at /96
      // 6to4: 2002:<v4>::/48.
      ['2002:7f00:1::1', '6to4 of loopback 127.0.0.1'],
      ['2002:c0a8:101::1', '6to4 of private 192.168.1.1'],
      // Teredo: the client's address XOR-ed with ones (7f00:0001 -> 80ff:fffe), and the server's as is.
      ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'Teredo of loopback 127.0.0.1'],
      ['2001:0:a00:1:8000:63bf:f7f7:f7f7', 'Teredo of private 10.0.0.1'],
      // ISATAP: any prefix, interface id 0:5efe or 200:5efe, then the IPv4 address.
      ['2a00:1450::5efe:a00:1', 'ISATAP of private 10.0.0.1'],
      ['2a00:1450::200:5efe:7f00:1', 'ISATAP of loopback 127.0.0.1'],
    ];
    for (const [address, why] of refused) assert.equal(strict.refusal(address, 80), why, address);
    // The local-use NAT64 prefix cut at /48 (the u octet skipped): 10.1.8.8 at bits 48-87, 8.8.8.8 last.
    assert.equal(strict.refusal('64:ff9b:1:a01:8:808:808:808', 80), 'NAT64 of private 10.1.8.8');
    for (const address of ['64:ff9b::808:808', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:f7f7:f7f7', '2a00:1450::5efe:808:808']) {
      assert.equal(strict.refusal(address, 80), null, address);
    }
  });

  it('lets public addresses through on any port', () => {
    for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '2a00:1450:4009:81f::200e']) {
      assert.equal(strict.refusal(address, 80), null, address);
      assert.equal(strict.refusal(address, 5432), null, address);
    }
    assert.equal(strict.refusal('localhost', 80), 'not an IP address');
    assert.equal(strict.refusal('127.1', 80), 'not an IP address');
  });

  it('an allow-list entry without a port opens ports 80 and 443 only; one with a port, that port; `*` every port', () => {
    const policy = addressPolicy(['127.0.0.1', '10.20.0.0/16:8080', '192.168.0.0/16:*', '[::1]:8443', 'fc00::/7']);
    assert.equal(policy.refusal('127.0.0.1', 80), null);
    assert.equal(policy.refusal('127.0.0.1', 443), null);
    assert.match(policy.refusal('127.0.0.1', 5432)!, /^loopback; port 5432 is not allowed by 127\.0\.0\.1 \(an entry without a port allows 80 and 443 only\)$/);
    assert.equal(policy.refusal('127.0.0.2', 80), 'loopback');
    assert.equal(policy.refusal('10.20.30.40', 8080), null);
    assert.notEqual(policy.refusal('10.20.30.40', 80), null);
    assert.equal(policy.refusal('10.21.0.1', 8080), 'private');
    assert.equal(policy.refusal('192.168.7.7', 22), null);
    assert.equal(policy.refusal('::1', 8443), null);
    assert.notEqual(policy.refusal('::1', 443), null);
    assert.equal(policy.refusal('fd00::5', 443), null);
    assert.notEqual(policy.refusal('fd00::5', 5432), null);
    // Only within its family: allowing 127.0.0.1 does not allow the same address IPv4-mapped.
    assert.equal(policy.refusal('::ffff:127.0.0.1', 80), 'IPv4-mapped');
    // A lookup does not know the port yet: an address allowed on some port passes, to be judged again on connect.
    assert.equal(policy.refusal('10.20.30.40', null), null);
    assert.equal(policy.refusal('10.21.0.1', null), 'private');
  });

  it('parses allow-list entries and rejects junk; the config names a bad one', () => {
    assert.deepEqual(parseAllowEntry('10.0.0.0/8').ports, [80, 443]);
    assert.deepEqual(parseAllowEntry('10.0.0.0/8:8080').ports, [8080]);
    assert.equal(parseAllowEntry('127.0.0.1:*').ports, 'any');
    assert.equal(parseAllowEntry('[fc00::/7]:*').range[1], 7);
    assert.equal(parseAllowEntry('::1').range[1], 128);
    assert.equal(parseIp('example.com'), null);
    for (const bad of [
      '10.0.0.0/33',
      'nope/8',
      '10.0.0.0/8/1',
      '10.0.0.0/x',
      '::1/129',
      '127.0.0.1:0',
      '127.0.0.1:70000',
      '127.0.0.1:http',
      '[::1]:',
      '127.1',
    ]) {
      assert.throws(() => parseAllowEntry(bad), /not an allow-list entry/, bad);
    }
    assert.throws(() => parseConfig({ download: { allowAddresses: ['127.0.0.1/40'] } }, {}), /download\.allowAddresses\.0: an address or range/);
    assert.deepEqual(parseConfig({}, {}).download.allowAddresses, []);
  });

  it('a lookup that knows the port drops addresses allowed on other ports only', async () => {
    const policy = addressPolicy(['10.0.0.1']);
    const fakeDns = ((_h: string, _o: unknown, cb: (e: null, a: unknown) => void) => cb(null, [{ address: '10.0.0.1', family: 4 }])) as never;
    const lookup = (port: number) =>
      new Promise<{ error?: Error; address?: unknown }>((resolve) =>
        safeLookup(policy, fakeDns, port)('img.example', {}, (error: Error | null, address: unknown) => resolve(error ? { error } : { address })),
      );
    assert.deepEqual(await lookup(443), { address: '10.0.0.1' });
    const { error } = await lookup(5432);
    assert.equal(classifyDownloadError(error).errorClass, 'refused_address');
  });

  it('a real download to an allowed host on a port its entry does not open is refused before any byte is sent', async () => {
    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests++;
      res.end('x');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const download = { timeouts: { connectSeconds: 2, firstByteSeconds: 2, totalSeconds: 4 } };
    const webOnly = createDownloadClient(parseConfig({ download: { ...download, allowAddresses: ['127.0.0.1'] } }, {}).download, { noproxy: true });
    const thisPort = createDownloadClient(parseConfig({ download: { ...download, allowAddresses: [`127.0.0.1:${port}`] } }, {}).download, { noproxy: true });
    try {
      for (const url of [`http://127.0.0.1:${port}/a.jpg`, `http://localhost:${port}/a.jpg`]) {
        const error = await webOnly.got(url).then(
          () => null,
          (e: unknown) => e,
        );
        assert.equal(classifyDownloadError(error).errorClass, 'refused_address', url);
        assert.match(classifyDownloadError(error).reason, /port \d+ is not allowed by 127\.0\.0\.1/);
      }
      assert.equal(requests, 0);
      const ok = await thisPort.got(`http://127.0.0.1:${port}/a.jpg`);
      assert.equal(ok.body, 'x');
      assert.equal(requests, 1);
    } finally {
      webOnly.destroy();
      thisPort.destroy();
      server.close();
    }
  });
});
