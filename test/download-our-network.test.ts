import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { findAlerts } from '../src/alerts/alert-sources.ts';
import { networkFault, noRouteFailures, silentGateways, type NoRoute } from '../src/download/uplink-probe.ts';
import { databaseSocket, type DatabaseSocket } from './helpers/database-socket.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { ROOT } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** A connect error as Node makes it. */
function connectError(code: string, address: string, port = 80): NodeJS.ErrnoException & { address: string } {
  return Object.assign(new Error(`connect ${code} ${address}:${port}`), { code, syscall: 'connect', address, port });
}

/** got's wrapper around a socket's error. */
const wrapped = (cause: unknown) => Object.assign(new Error('request failed'), { code: 'ERR_GOT_REQUEST_ERROR', cause });

describe('lis_downloadd when our own network is down', function () {
  this.timeout(30_000);

  describe('whose fault a connect that could not send is (noRouteFailures, networkFault)', () => {
    const up = { 4: null, 6: null };
    const down = { 4: 'ENETUNREACH for 8.8.8.8', 6: 'ENETUNREACH for 2001:4860:4860::8888' };
    const judge = (error: unknown, uplink: Record<4 | 6, string | null>) => {
      const failures = noRouteFailures(error);
      return failures && (networkFault(failures, uplink, 'img.example')?.errorClass ?? null);
    };

    it('no route out for the family is ours; with one, the target alone is unreachable: the source (null: connection)', () => {
      for (const code of ['ENETUNREACH', 'EHOSTUNREACH']) {
        assert.equal(judge(wrapped(connectError(code, '203.0.113.1')), down), 'network_unavailable', code);
        assert.equal(judge(wrapped(connectError(code, '203.0.113.1')), up), null, code);
      }
    });

    it('no local address or port to send from, or an interface down, is ours whatever the routes', () => {
      for (const code of ['EADDRNOTAVAIL', 'ENETDOWN']) assert.equal(judge(wrapped(connectError(code, '203.0.113.1')), up), 'network_unavailable', code);
    });

    it('an answer from the far side, or no connect at all, is not judged here', () => {
      assert.equal(noRouteFailures(wrapped(connectError('ECONNREFUSED', '203.0.113.1'))), null);
      assert.equal(noRouteFailures(Object.assign(new Error('getaddrinfo EAI_AGAIN x'), { code: 'EAI_AGAIN', syscall: 'getaddrinfo' })), null);
      // Node tried both families: one was refused (the way out worked), so it is the source's.
      const both = Object.assign(new AggregateError([connectError('ENETUNREACH', '2001:db8::1'), connectError('ECONNREFUSED', '203.0.113.1')]), {
        code: 'ENETUNREACH',
      });
      assert.equal(noRouteFailures(both), null);
    });

    it('a host without IPv6 whose IPv4 works is no outage; with neither, an IPv6 target is ours too', () => {
      const v6: NoRoute[] = noRouteFailures(connectError('ENETUNREACH', '2001:db8::1'))!;
      assert.equal(v6[0].family, 6);
      assert.equal(networkFault(v6, { 4: null, 6: down[6] }, 'img.example'), null);
      assert.equal(networkFault(v6, down, 'img.example')?.errorClass, 'network_unavailable');
    });
  });

  it('a default gateway that does not answer ARP is ours (silentGateways); one that does, or none, is not', () => {
    const route = (gateway: string) =>
      `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n` +
      `eth0\t00000000\t${gateway}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n` +
      `eth0\t0000090A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n`;
    const arp = (flags: string) =>
      `IP address       HW type     Flags       HW address            Mask     Device\n10.9.0.2         0x1         ${flags}         00:00:00:00:00:00     *        eth0\n`;
    assert.equal(silentGateways(route('0200090A'), arp('0x0')), 'our gateway 10.9.0.2 on eth0 does not answer (no ARP reply)');
    assert.equal(silentGateways(route('0200090A'), arp('0x2')), null);
    assert.equal(silentGateways(route('0200090A'), arp('0x0').split('\n')[0]), null, 'not asked yet: no entry');
    assert.equal(silentGateways(route('00000000'), arp('0x0')), null, 'a point-to-point default route has no gateway');
  });

  describe('lis_downloadd in a network namespace of its own (unshare -n)', () => {
    let t: TestDatabase;
    let socket: DatabaseSocket | null = null;
    afterEach(async () => {
      await socket?.close();
      socket = null;
      await t?.drop();
    });

    /**
     * Runs lis_downloadd by hand in a private network namespace whose routes `setup` (ip commands) makes; the
     * database is reached through a unix socket (the file system is shared) forwarded to the test's server.
     */
    async function runInNamespace(setup: string): Promise<{ code: number | null; output: string }> {
      socket = await databaseSocket(t.url, t.dir);
      const child = spawn(
        'unshare',
        [
          '-n',
          'sh',
          '-c',
          `ip link set lo up && ${setup} exec "$0" bin/lis_downloadd --country uk --config "$1" --noproxy --verbose`,
          process.execPath,
          t.writeConfig(),
        ],
        { cwd: ROOT, env: { ...process.env, LIS_DATABASE_URL: socket.url }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
    }

    const download = { ...TEST_DOWNLOAD, allowAddresses: ['203.0.113.1:*', '198.51.100.1:*'] };
    // A feed's own bucket (operatedBy source): its endpoint unreachable is the source's, our network down is not.
    const imaged = { s3: { feed: { endpoint: 'http://198.51.100.1:9000', accessKeyId: 'k', secretAccessKey: 's', operatedBy: 'source' as const } } };
    async function enqueue(): Promise<void> {
      await t.db
        .insertInto('live_images')
        .values(
          ['http://203.0.113.1/a.jpg', 'http://198.51.100.1/b.jpg', 's3://feed/c.jpg'].map((image_url) => ({ country: 'uk', datasource_id: 7, image_url })),
        )
        .execute();
    }
    const rows = () => t.db.selectFrom('live_images').select(['image_url', 'state', 'attempts', 'last_error_class', 'last_error']).orderBy('id').execute();

    it('no route out at all: every row given back uncharged (network_unavailable), and the run by hand says why it ends', async () => {
      t = await createTestDatabase({ overrides: { download, imaged } });
      await enqueue();
      const { code, output } = await runInNamespace('');
      assert.equal(code, 0, output);
      for (const r of await rows()) {
        assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'network_unavailable'], `${r.image_url}: ${r.last_error}`);
        assert.match(
          r.last_error!,
          /^network unavailable: this host has no way to the Internet \(ENETUNREACH for 8\.8\.8\.8\), so (203\.0\.113\.1|198\.51\.100\.1|the endpoint of bucket feed) could not be reached \(connect ENETUNREACH .*\); not the source's fault$/,
        );
      }
      assert.match(output, /No rows gained\. No work to do\. 3 rows wait for a retry until \S+ \(network_unavailable: network unavailable: /);
      // Told as what it is (network_down, from the run's outcomes per minute), not left to the stage's error rate,
      // which does not count these rows.
      const alerts = await findAlerts(t.db, { ...t.config.alerts, networkDownMinutes: 0 }, ['network_down']);
      assert.deepEqual(
        alerts.map((a) => [a.key, a.subject]),
        [['network_down:network_unavailable', 'our network is unavailable: downloads wait']],
      );
      assert.match(alerts[0].detail, /^network unavailable: this host has no way to the Internet .*\. 3 downloads of UK given back for it in the last 15 min /);
      const { ours } = await t.db
        .selectFrom('worker_minutes')
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('ours'), eb.lit(0)).as('ours'))
        .executeTakeFirstOrThrow();
      assert.equal(Number(ours), 0, 'not counted in the stage error rate');
    });

    it('a default route whose gateway does not answer (ARP): every row given back uncharged (network_unavailable)', async () => {
      t = await createTestDatabase({ overrides: { download, imaged } });
      await enqueue();
      // A link whose other end (v1) has no address: nobody answers ARP for the gateway 10.9.0.2. The kernel gives up
      // after one question and 200 ms here (~3 s by default), within the connect limit (1 s).
      const { code, output } = await runInNamespace(
        'ip link add v0 type veth peer name v1 && ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up && ip route add default via 10.9.0.2 && ' +
          'sysctl -qw net.ipv4.neigh.v0.mcast_solicit=1 net.ipv4.neigh.v0.ucast_solicit=0 net.ipv4.neigh.v0.app_solicit=0 net.ipv4.neigh.v0.retrans_time_ms=200 &&',
      );
      assert.equal(code, 0, output);
      for (const r of await rows()) {
        assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'network_unavailable'], `${r.image_url}: ${r.last_error}`);
        assert.match(
          r.last_error!,
          /^network unavailable: this host has no way to the Internet \(our gateway 10\.9\.0\.2 on v0 does not answer \(no ARP reply\)\), so .* \(connect EHOSTUNREACH /,
        );
      }
    });

    it('a route out, but none to the target (a throw or unreachable route): the source is unreachable, connection, charged as before', async () => {
      t = await createTestDatabase({ overrides: { download, imaged } });
      await enqueue();
      const { code, output } = await runInNamespace(
        'ip route add default dev lo && ip route add unreachable 203.0.113.0/24 && ip route add throw 198.51.100.0/24 &&',
      );
      assert.equal(code, 0, output);
      const found = await rows();
      for (const r of found) assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 1, 'connection'], `${r.image_url}: ${r.last_error}`);
      assert.deepEqual(
        found.slice(0, 2).map((r) => r.last_error),
        ['connection: connect EHOSTUNREACH 203.0.113.1:80 - Local (0.0.0.0:0)', 'connection: connect ENETUNREACH 198.51.100.1:80 - Local (0.0.0.0:0)'],
      );
    });
  });
});
