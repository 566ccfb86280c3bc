import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { isSourceFault } from '../src/failure/failure-reasons.ts';
import { parseHostPort } from '../src/net/host-port.ts';
import { referencesFor, ringWith, targetAddresses, WayOutProbe, wayOutFailure, type Reached } from '../src/download/way-out-probe.ts';
import { databaseSocket } from './helpers/database-socket.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { makeTestImages } from './helpers/image-server.ts';
import { ROOT, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

const run = promisify(execFile);

/** The two sources' addresses, on "the Internet": a namespace beyond our gateway. */
const A = '203.0.113.1';
const B = '198.51.100.1';
/** The same two sources over IPv6, and the link between the daemon and the gateway. */
const A6 = '2001:db8:a::1';
const B6 = '2001:db8:b::1';

describe('lis_downloadd when the network beyond our gateway is dead (outside references)', function () {
  this.timeout(60_000);

  describe('the references and the verdict (pure)', () => {
    const reached = (host: string, address: string, port = 80): Reached => ({ host, address, port });

    it('the ring keeps the newest distinct addresses, at most eight', () => {
      let ring: Reached[] = [];
      for (let i = 1; i <= 10; i++) ring = ringWith(ring, reached(`h${i}.example`, `192.0.2.${i}`));
      ring = ringWith(ring, reached('again.example', '192.0.2.9', 443));
      assert.deepEqual(
        ring.map((r) => `${r.address}:${r.port}`),
        ['192.0.2.9:443', '192.0.2.10:80', '192.0.2.8:80', '192.0.2.7:80', '192.0.2.6:80', '192.0.2.5:80', '192.0.2.4:80', '192.0.2.3:80'],
      );
    });

    it('never the failing host itself (by name or address); a no-route failure asks its own family only', () => {
      const ring = [reached('a.example', A), reached('b.example', B), reached('c.example', '2001:db8::1', 443)];
      const targets = [parseHostPort('probe.example.net:443'), parseHostPort(`${B}:80`)];
      assert.deepEqual(
        referencesFor(ring, targets, 'a.example', [], null).map((r) => r.label),
        [`${B}:80`, '[2001:db8::1]:443', 'probe.example.net:443', `${B}:80`],
      );
      assert.deepEqual(
        referencesFor(ring, targets, 'other.example', [B], null).map((r) => r.label),
        [`${A}:80`, '[2001:db8::1]:443', 'probe.example.net:443'],
      );
      assert.deepEqual(
        referencesFor(ring, [], '[2001:db8::2]', ['2001:db8::2'], new Set([6])).map((r) => r.label),
        ['[2001:db8::1]:443'],
      );
      assert.deepEqual(referencesFor([reached(A, A)], [], A, [], null), [], 'the only host reached is the failing one: no outside reference');
    });

    it("a target's addresses: its IP literal, else those Node tried (autoSelectFamilyAttemptedAddresses), else none", () => {
      assert.deepEqual(targetAddresses('[2001:db8::1]', undefined), ['2001:db8::1']);
      assert.deepEqual(targetAddresses(A, ['192.0.2.1:80']), [A]);
      assert.deepEqual(targetAddresses('img.example', ['2001:db8::1:443', '192.0.2.1:443']), ['2001:db8::1', '192.0.2.1']);
      assert.deepEqual(targetAddresses('img.example', undefined), []);
    });

    it('no reference keeps the failure as it was; one that answered says so; none answering is ours, uncharged', () => {
      const timeout = { reason: 'timeout: connecting took too long', errorClass: 'timeout', retryable: true };
      assert.deepEqual(wayOutFailure(timeout, { kind: 'no_reference' }, A, 1000), timeout);
      assert.deepEqual(wayOutFailure(timeout, { kind: 'answered', by: `${B}:80` }, A, 1000), {
        ...timeout,
        reason: `timeout: connecting took too long (our way out works: ${B}:80 answered)`,
      });
      const ours = wayOutFailure(timeout, { kind: 'silent', tried: [`${B}:80`] }, A, 1000);
      assert.equal(ours.errorClass, 'network_unavailable');
      assert.equal(isSourceFault(ours.errorClass), false);
      assert.equal(
        ours.reason,
        `network unavailable: nothing answers beyond our gateway (no TCP answer within 1000 ms from ${B}:80), so ${A} could not be reached (timeout: connecting took too long); not the source's fault`,
      );
    });

    it('a fresh probe has no reference; a refusal from a reference is an answer (our packets went out and back)', async () => {
      assert.deepEqual(await new WayOutProbe([], 500).judge(A, [], null), { kind: 'no_reference' });
      // A port nobody listens on: the kernel answers with a reset.
      assert.deepEqual(await new WayOutProbe([parseHostPort('127.0.0.1:1')], 500).judge(A, [], null), { kind: 'answered', by: '127.0.0.1:1' });
    });

    it('download.uplinkProbeTargets entries are host:port', () => {
      assert.deepEqual(parseHostPort('[2001:DB8::1]:443'), { host: '2001:db8::1', port: 443 });
      for (const bad of ['192.0.2.1', '2001:db8::1:443', 'a.example:0', 'a.example:70000', 'http://a.example:80'])
        assert.throws(() => parseHostPort(bad), TypeError, bad);
    });
  });

  describe('lis_downloadd behind a gateway whose way on dies (network namespaces)', () => {
    let t: TestDatabase;
    const cleanups: Array<() => Promise<void> | void> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
      await t?.drop();
    });

    /** Kills `child` (if still running) and waits for its end: its network namespace goes with it. */
    const stopped = (child: ChildProcess) => async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const closed = once(child, 'close');
        child.kill('SIGKILL');
        await closed;
      }
    };

    /**
     * "The Internet": a network namespace of its own with the sources A and B on its loopback, one HTTP server
     * answering for both with a JPEG, and forwarding on (it is our gateway too: 10.9.0.2, the daemon's side links to it).
     * `keepAlive: false`: it closes every connection after its answer, so that each download connects anew.
     * `cut` takes addresses away from it: their packets are then forwarded nowhere: dropped without a word with
     * forwarding off (a router whose uplink died), answered "unreachable" with it on. `mend` puts them back.
     * `silenceV6` turns IPv6 off on the gateway's side of the link (its address and Neighbor Discovery go): a
     * gateway that does not answer, over IPv6 only; `mend` brings it back.
     */
    async function internet(
      keepAlive = true,
    ): Promise<{ pid: number; cut(addresses: string[], how: 'silent' | 'unreachable'): Promise<void>; silenceV6(): Promise<void>; mend(): Promise<void> }> {
      const jpeg = (await makeTestImages()).jpeg.toString('base64');
      const server = `const b=Buffer.from(process.env.JPEG,'base64');require('http').createServer((q,s)=>{q.resume();s.writeHead(200,{'content-type':'image/jpeg','content-length':b.length,...(process.env.CLOSE?{connection:'close'}:{})});s.end(b)}).listen(80,'::',()=>console.log('listening'))`;
      const child = spawn(
        'unshare',
        [
          '-n',
          'sh',
          '-c',
          `ip link set lo up && ip addr add ${A}/32 dev lo && ip addr add ${B}/32 dev lo && ip addr add ${A6}/128 dev lo && ip addr add ${B6}/128 dev lo && ` +
            // No rate limit on its "unreachable" answers (Linux sends one a second by default): each connect gets one.
            `sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 && exec "$0" -e "$1"`,
          process.execPath,
          server,
        ],
        { env: { ...process.env, JPEG: jpeg, ...(keepAlive ? {} : { CLOSE: '1' }) }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      cleanups.push(stopped(child));
      let output = '';
      child.stderr.on('data', (chunk) => (output += chunk));
      await within(
        new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (chunk) => String(chunk).includes('listening') && resolve());
          child.on('close', () => reject(new Error(`the Internet's namespace ended: ${output}`)));
        }),
        "the Internet's server listening",
        10_000,
      );
      const inside = (script: string) => run('nsenter', ['-t', String(child.pid), '-n', 'sh', '-c', script]);
      let taken: string[] = [];
      let v6Silent = false;
      return {
        pid: child.pid!,
        async cut(addresses, how) {
          taken = addresses;
          await inside(`${addresses.map((a) => `ip addr del ${a}/32 dev lo`).join(' && ')} && sysctl -qw net.ipv4.ip_forward=${how === 'silent' ? 0 : 1}`);
        },
        async silenceV6() {
          v6Silent = true;
          await inside('sysctl -qw net.ipv6.conf.v1.disable_ipv6=1');
        },
        async mend() {
          const v6 = v6Silent ? ['sysctl -qw net.ipv6.conf.v1.disable_ipv6=0', 'ip addr add 2001:db8:9::2/64 dev v1 nodad'] : [];
          await inside([...taken.map((a) => `ip addr add ${a}/32 dev lo`), ...v6, 'sysctl -qw net.ipv4.ip_forward=1'].join(' && '));
          taken = [];
          v6Silent = false;
        },
      };
    }

    /**
     * lis_downloadd as a service in a network namespace of its own, linked to the Internet's (pid `internet`) by a
     * veth pair, its default routes through 10.9.0.2 (which answers ARP) and 2001:db8:9::2; the database through a unix socket.
     */
    async function downloadd(internet: number, download: Record<string, unknown> = {}): Promise<void> {
      const socket = await databaseSocket(t.url, t.dir);
      cleanups.push(() => socket.close());
      const config = t.writeConfig({
        download: { ...TEST_DOWNLOAD, allowAddresses: [`${A}:*`, `${B}:*`, '[2001:db8::/32]:*'], ...download },
        queue: { pollSeconds: 0.2, heartbeatSeconds: 0.5, oursRetrySeconds: 0.5 },
      });
      const link =
        'ip link set lo up && ip link add v0 type veth peer name v1 netns "$2" && ' +
        'nsenter -t "$2" -n sh -c "ip addr add 10.9.0.2/24 dev v1 && ip addr add 2001:db8:9::2/64 dev v1 nodad && ip link set v1 up" && ' +
        'ip addr add 10.9.0.1/24 dev v0 && ip addr add 2001:db8:9::1/64 dev v0 nodad && ip link set v0 up && ' +
        'ip route add default via 10.9.0.2 && ip -6 route add default via 2001:db8:9::2';
      const child = spawn(
        'unshare',
        ['-n', 'sh', '-c', `${link} && exec "$0" bin/lis_downloadd --country uk --config "$1" --noproxy --service`, process.execPath, config, String(internet)],
        {
          cwd: ROOT,
          env: { ...process.env, LIS_DATABASE_URL: socket.url },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let output = '';
      child.stderr.on('data', (chunk) => (output += chunk));
      child.on('close', (code) => code !== null && code !== 0 && console.error(`lis_downloadd ended with ${code}: ${output}`));
      cleanups.push(stopped(child));
    }

    /** New rows, one of datasource 7 (on A) and one of datasource 8 (on B), named by `tag`; `v6`: at their IPv6 addresses. */
    async function enqueue(tag: string, v6 = false): Promise<string[]> {
      const urls = v6 ? [`http://[${A6}]/${tag}.jpg`, `http://[${B6}]/${tag}.jpg`] : [`http://${A}/${tag}.jpg`, `http://${B}/${tag}.jpg`];
      await t.db
        .insertInto('live_images')
        .values(urls.map((image_url, i) => ({ country: 'uk', datasource_id: 7 + i, image_url })))
        .execute();
      return urls;
    }
    const rowsOf = (urls: string[]) =>
      t.db
        .selectFrom('live_images')
        .select(['image_url', 'state', 'attempts', 'last_error_class', 'last_error', 'downloaded_at'])
        .where('image_url', 'in', urls)
        .orderBy('image_url', 'desc')
        .execute();
    const downloaded = (urls: string[], what: string) => waitFor(async () => (await rowsOf(urls)).every((r) => r.downloaded_at !== null), 20_000, what);
    const failed = (urls: string[], what: string) =>
      waitFor(async () => (await rowsOf(urls)).every((r) => r.last_error_class !== null || r.downloaded_at !== null), 20_000, what);

    type Internet = Awaited<ReturnType<typeof internet>>;
    // A feed's own bucket (operatedBy source) on A, where nothing listens: only tried while the way on is dead.
    const imaged = { s3: { feed: { endpoint: `http://${A}:9000`, accessKeyId: 'k', secretAccessKey: 's', operatedBy: 'source' as const } } };
    async function sourcesReached(keepAlive = true, v6 = false): Promise<Internet> {
      t = await createTestDatabase({ overrides: { imaged } });
      await t.db
        .insertInto('datasources')
        .values([7, 8].map((datasource_id) => ({ country: 'uk', datasource_id })))
        .execute();
      const net = await internet(keepAlive);
      await downloadd(net.pid);
      // Over IPv6, the sources are reached over IPv4 too: IPv4 references that answer, which an IPv6 target's failure does not ask.
      if (v6) await downloaded(await enqueue('before4'), 'the rows of both sources downloaded over IPv4');
      await downloaded(await enqueue('before', v6), 'the rows of both sources downloaded while the way out works');
      return net;
    }

    const escaped = (text: string) => text.replace(/[.[\]]/g, '\\$&');
    const either = (a: string, b: string) => `(${escaped(a)}|${escaped(b)})`;
    // Silent: the requests go on the sockets kept alive from before, and get no response at all. Unreachable: each
    // download connects anew (the server closes its connections), and the router answers the SYN. IPv6: the
    // gateway stops answering over IPv6 (Neighbor Discovery too), new connects to sources reached over IPv6.
    const outages = [
      {
        how: 'packets vanish, on kept-alive sockets',
        keepAlive: true,
        v6: false,
        cut: (net: Internet) => net.cut([A, B], 'silent'),
        reason: `from ${either(A, B)}:80\\), so ${either(A, B)} could not be reached \\(timeout: waiting for the first byte took too long\\)`,
        // And a feed's bucket on A: its endpoint times out, ours as well.
        s3: `from ${escaped(B)}:80\\), so the endpoint of bucket feed could not be reached \\(S3 TimeoutError: .*\\)`,
      },
      {
        how: 'the router answers a new connect unreachable',
        keepAlive: false,
        v6: false,
        cut: (net: Internet) => net.cut([A, B], 'unreachable'),
        reason: `from ${either(A, B)}:80\\), so ${either(A, B)} could not be reached \\(connection: connect ENETUNREACH .*\\)`,
      },
      {
        how: 'our IPv6 gateway silent, while IPv4 works',
        keepAlive: false,
        v6: true,
        cut: (net: Internet) => net.silenceV6(),
        reason: `from ${either(`[${A6}]`, `[${B6}]`)}:80\\), so ${either(`[${A6}]`, `[${B6}]`)} could not be reached \\((timeout: .*|connection: connect EHOSTUNREACH .*)\\)`,
      },
    ];
    for (const outage of outages) {
      it(`the way on dead beyond our gateway (${outage.how}): rows of both sources given back uncharged (network_unavailable), then downloaded once it is back`, async () => {
        const net = await sourcesReached(outage.keepAlive, outage.v6);
        await outage.cut(net);
        const urls = await enqueue('during', outage.v6);
        const bucket = outage.s3 ? ['s3://feed/during.jpg'] : [];
        if (outage.s3) await t.db.insertInto('live_images').values({ country: 'uk', datasource_id: 8, image_url: bucket[0] }).execute();
        await failed([...urls, ...bucket], 'the rows tried while the way on is dead');
        for (const r of bucket.length ? await rowsOf(bucket) : []) {
          assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'network_unavailable'], `${r.image_url}: ${r.last_error}`);
          assert.match(
            r.last_error!,
            new RegExp(`^network unavailable: nothing answers beyond our gateway \\(no TCP answer within 1000 ms ${outage.s3}; not the source's fault$`),
          );
        }
        for (const r of await rowsOf(urls)) {
          assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'network_unavailable'], `${r.image_url}: ${r.last_error}`);
          assert.match(
            r.last_error!,
            new RegExp(`^network unavailable: nothing answers beyond our gateway \\(no TCP answer within 1000 ms ${outage.reason}; not the source's fault$`),
          );
        }
        const sources = await t.db.selectFrom('datasources').select(['datasource_id', 'enabled']).orderBy('datasource_id').execute();
        assert.deepEqual(sources, [
          { datasource_id: 7, enabled: true },
          { datasource_id: 8, enabled: true },
        ]);
        await net.mend();
        await downloaded(urls, 'the rows downloaded once the way is back');
        for (const r of await rowsOf(urls)) assert.equal(r.attempts, 0, `${r.image_url}: charged ${r.attempts}`);
      });
    }

    it('one source slow (its packets vanish) while another host reached lately answers: its row charged timeout, as before', async () => {
      const net = await sourcesReached();
      await net.cut([A], 'silent');
      const urls = await enqueue('slow');
      await failed(urls, 'the rows tried while A is silent');
      const [onA, onB] = await rowsOf(urls);
      assert.deepEqual([onA.state, onA.attempts, onA.last_error_class], ['waiting', 1, 'timeout'], onA.last_error!);
      assert.match(onA.last_error!, new RegExp(`^timeout: .* \\(our way out works: ${escaped(B)}:80 answered\\)$`));
      assert.equal(onB.attempts, 0);
      assert.notEqual(onB.downloaded_at, null);
    });

    it('a fresh start with download.uplinkProbeTargets: nothing reached yet, the configured target silent too: uncharged (network_unavailable)', async () => {
      t = await createTestDatabase();
      const net = await internet();
      await net.cut([A, B], 'silent');
      await downloadd(net.pid, { uplinkProbeTargets: [`${B}:80`] });
      const [onA] = await enqueue('fresh');
      await failed([onA], 'the row tried');
      const [r] = await rowsOf([onA]);
      assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'network_unavailable'], r.last_error!);
      assert.match(
        r.last_error!,
        new RegExp(`no TCP answer within 1000 ms from ${escaped(B)}:80\\), so ${escaped(A)} could not be reached \\(timeout: connecting took too long\\)`),
      );
    });
  });
});
