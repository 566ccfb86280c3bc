import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { ROOT } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/**
 * Our own DNS resolver failing is ours, not every source's: lis_downloadd runs in a mount namespace of its own
 * (`unshare -m`, private: nothing else on the machine sees it) whose /etc/resolv.conf names a resolver we choose.
 * One that does not answer at all charges no row (dns_unavailable); one that answers SERVFAIL for a name is
 * that name's servers failing (dns, the source's), as before.
 */
describe("lis_downloadd when our own resolver fails (a resolv.conf of the daemon's own)", function () {
  this.timeout(30_000);
  let t: TestDatabase;
  let servfail: dgram.Socket | null = null;
  afterEach(async () => {
    servfail?.close();
    servfail = null;
    await t?.drop();
  });

  /** Runs lis_downloadd by hand with `nameserver` as its only resolver; resolves with its exit code and output. */
  function runWithResolver(nameserver: string): Promise<{ code: number | null; output: string }> {
    const resolv = path.join(t.dir, 'resolv.conf');
    fs.writeFileSync(resolv, `nameserver ${nameserver}\noptions timeout:1 attempts:1\n`);
    const env = { ...process.env };
    delete env.LIS_DATABASE_URL; // the config names the test's database
    const child = spawn(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount --bind "$0" /etc/resolv.conf && exec "$1" bin/lis_downloadd --country uk --config "$2" --noproxy --verbose',
        resolv,
        process.execPath,
        t.writeConfig(),
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
  }

  async function enqueue(): Promise<void> {
    await t.db
      .insertInto('live_images')
      .values(['a', 'b', 'c'].map((h) => ({ country: 'uk', datasource_id: 7, image_url: `http://img-${h}.example.test/${h}.jpg` })))
      .execute();
  }

  const rows = () => t.db.selectFrom('live_images').select(['image_url', 'state', 'attempts', 'last_error_class', 'last_error']).execute();

  it('a resolver that does not answer: every row given back uncharged (dns_unavailable), and the run by hand says why it ends', async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    await enqueue();
    // Nothing listens on this loopback address: each question is refused at once.
    const { code, output } = await runWithResolver('127.83.21.7');
    assert.equal(code, 0, output);
    for (const r of await rows()) {
      assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'dns_unavailable'], `${r.image_url}: ${r.last_error}`);
      assert.match(
        r.last_error!,
        /^DNS unavailable: our resolver does not answer \(ECONNREFUSED from 127\.83\.21\.7\), so img-[abc]\.example\.test could not be looked up; not the source's fault$/,
      );
    }
    assert.match(output, /No rows gained\. No work to do\. 3 rows wait for a retry until \S+ \(dns_unavailable: DNS unavailable: our resolver does not answer/);
  });

  it("a resolver that answers SERVFAIL for the name is that name's servers failing: dns, charged to the row as before", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    await enqueue();
    servfail = dgram.createSocket('udp4');
    const socket = servfail;
    socket.on('message', (query, from) => {
      // The query back with QR, RD and RA set and RCODE 2 (SERVFAIL): a resolver that works, whose upstream failed.
      const answer = Buffer.from(query);
      answer[2] = 0x81 | (query[2] & 0x01);
      answer[3] = 0x82;
      socket.send(answer, from.port, from.address);
    });
    await new Promise<void>((resolve) => socket.bind(53, '127.83.21.8', resolve));
    const { code, output } = await runWithResolver('127.83.21.8');
    assert.equal(code, 0, output);
    for (const r of await rows()) {
      assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 1, 'dns'], `${r.image_url}: ${r.last_error}`);
      assert.match(r.last_error!, /^DNS: getaddrinfo EAI_AGAIN img-[abc]\.example\.test$/);
    }
  });
});
