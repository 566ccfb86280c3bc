import assert from 'node:assert/strict';
import { pushConfigSchema } from '../src/config/push-config.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { roomForChunk } from '../src/daemon/run-daemon.ts';
import type { Db } from '../src/db/connect.ts';
import pLimit from 'p-limit';
import { PushWorker } from '../src/push/push-worker.ts';
import { formatTarget, normaliseTarget, parseFrontendTarget, rsyncDestination } from '../src/push/frontend-target.ts';
import { decideRowResults, planPush, pushKey, type FrontendRowOutcome, type PushRow } from '../src/push/push-plan.ts';
import { buildRsyncInvocation, sshCommand } from '../src/push/rsync-command.ts';
import { classifyRsyncExit, parseRsyncStats } from '../src/push/rsync-outcome.ts';

describe('push: pure parts', () => {
  it('the runner lets a pusher work push.chunksAtOnce whole chunks at once (2 by default), and no more', () => {
    const busy = { unreported: 500 };
    assert.equal(pushConfigSchema.parse({}).chunksAtOnce, 2);
    // The pusher hands the runner what the config says.
    const config = parseConfig({ host: 'h', database: { url: 'postgres://h/db' }, push: { chunksAtOnce: 3 } }, {}, '/tmp');
    assert.equal(new PushWorker({ config, db: null as unknown as Db, country: 'uk', limit: pLimit(8) }).chunksAtOnce, 3);
    assert.throws(() => parseConfig({ push: { chunksAtOnce: 0 } }, {}, '/tmp'), /chunksAtOnce/);
    assert.equal(roomForChunk([], false, 500, 2), true);
    assert.equal(roomForChunk([busy], false, 500, 2), true, 'the next chunk is sent while the last one finishes');
    assert.equal(roomForChunk([busy, busy], false, 500, 2), false);
    assert.equal(roomForChunk([busy], false, 500), false, 'one at a time without it');
    // Overlapping workers (lis_downloadd) as before: another chunk once the rest are stragglers.
    assert.equal(roomForChunk([{ unreported: 10 }], true, 500), true);
    assert.equal(roomForChunk([{ unreported: 400 }], true, 500), false);
  });

  describe('frontend targets', () => {
    it('parses local paths, rsync daemons and ssh targets, and spells them back the same', () => {
      assert.deepEqual(parseFrontendTarget('/srv/thumbs/'), { kind: 'local', path: '/srv/thumbs' });
      assert.deepEqual(parseFrontendTarget('rsync://n1.example.com:8730/thumbs/live'), {
        kind: 'daemon',
        user: null,
        host: 'n1.example.com',
        port: 8730,
        module: 'thumbs',
        path: 'live',
      });
      assert.deepEqual(parseFrontendTarget('rsync://push@10.0.0.3/thumbs'), {
        kind: 'daemon',
        user: 'push',
        host: '10.0.0.3',
        port: null,
        module: 'thumbs',
        path: '',
      });
      assert.deepEqual(parseFrontendTarget('www@n3:/var/www/thumbs'), { kind: 'ssh', user: 'www', host: 'n3', path: '/var/www/thumbs' });
      for (const t of ['/srv/thumbs', 'rsync://n1.example.com:8730/thumbs/live', 'rsync://push@10.0.0.3/thumbs', 'www@n3:/var/www/thumbs', 'n3:/']) {
        assert.equal(formatTarget(parseFrontendTarget(t)), t);
      }
      assert.equal(rsyncDestination(parseFrontendTarget('rsync://h:1/m')), 'rsync://h:1/m/');
      assert.equal(rsyncDestination(parseFrontendTarget('n3:/')), 'n3:/');
      assert.equal(normaliseTarget('./front', '/tmp/x'), '/tmp/x/front');
    });

    it('takes a local path with spaces and other printable characters (a checkout under "my sites")', () => {
      for (const ok of ['/home/me/my sites/var/demo/frontends/n1', '/srv/thümbs (n1)/#1'])
        assert.deepEqual(parseFrontendTarget(ok), { kind: 'local', path: ok });
    });

    it('refuses what rsync would misread or what climbs out of the root, with a stable code', () => {
      for (const bad of [
        '',
        'relative/path',
        'rsync://host',
        'rsync://host:99999/m',
        'rsync://h/m/../x',
        'rsync://h/m/a b',
        'www@n3:/var/a b',
        '/srv/a\nb',
        '/srv/a\tb',
        'host:relative',
        'http://n1/x',
        ' /srv',
      ]) {
        assert.throws(
          () => parseFrontendTarget(bad),
          (e: Error & { code?: string }) => e.code === 'ERR_FRONTEND_TARGET',
          bad,
        );
      }
    });
  });

  describe('the rsync command', () => {
    const config = pushConfigSchema.parse({});
    it('is one process per chunk: the list on stdin, relative paths, temp-file-then-rename, timeouts', () => {
      const inv = buildRsyncInvocation(config, parseFrontendTarget('rsync://127.0.0.1:873/thumbs'), '/store', ['uk/a3/0f/x_small.jpg', 'uk/a3/0f/x_large.jpg']);
      assert.equal(inv.command, 'rsync');
      assert.ok(inv.args.includes('--files-from=-') && inv.args.includes('--from0'));
      assert.ok(!inv.args.some((a) => /inplace|partial|append|delete/.test(a)), 'never writes in place or deletes');
      assert.ok(inv.args.includes('--timeout=60') && inv.args.includes('--contimeout=15') && inv.args.includes('--chmod=D755,F644'));
      assert.deepEqual(inv.args.slice(-2), ['/store/', 'rsync://127.0.0.1:873/thumbs/']);
      assert.equal(inv.input, 'uk/a3/0f/x_small.jpg\0uk/a3/0f/x_large.jpg\0');
      assert.ok(!inv.args.some((a) => a.startsWith('--bwlimit')));
    });

    it("adds the bandwidth limit and, for ssh, the operator's ssh options ahead of ours", () => {
      const ssh = pushConfigSchema.parse({ bwLimit: '20m', sshOptions: ['-i', '/keys/my key', '-p', '2222'] });
      const inv = buildRsyncInvocation(ssh, parseFrontendTarget('www@n3:/var/www'), '/store', ['a']);
      assert.ok(inv.args.includes('--bwlimit=20m'));
      assert.ok(!inv.args.some((a) => a.startsWith('--contimeout')), 'contimeout is for daemons only');
      assert.equal(inv.args[inv.args.indexOf('-e') + 1], "ssh -i '/keys/my key' -p 2222 -o BatchMode=yes -o ConnectTimeout=15");
      assert.equal(sshCommand({ sshPath: 'ssh', sshOptions: ["it's"], connectTimeoutSeconds: 1 }), 'ssh "it\'s" -o BatchMode=yes -o ConnectTimeout=1');
    });
  });

  describe('rsync exits', () => {
    it('classifies by exit code and message, quoting rsync', () => {
      const refused = classifyRsyncExit(
        10,
        null,
        'rsync: [sender] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)\nrsync error: error in socket IO (code 10) at clientserver.c(139) [sender=3.5.0]\n',
      );
      assert.equal(refused.ok, false);
      assert.ok(!refused.ok && refused.errorClass === 'frontend_down');
      assert.ok(
        !refused.ok &&
          refused.message.startsWith(
            'rsync exit 10 (error in socket I/O): rsync: [sender] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)',
          ),
        !refused.ok ? refused.message : '',
      );
      const full = classifyRsyncExit(
        11,
        null,
        'rsync: [receiver] write failed on "/srv/uk/a3/0f/x_small.jpg": No space left on device (28)\nrsync error: error in file IO (code 11) at receiver.c(381) [receiver=3.2.7]',
      );
      assert.ok(!full.ok && full.errorClass === 'frontend_disk_full' && full.message.includes('No space left on device'));
      const cases: Array<[number, string, string]> = [
        [24, 'file has vanished: "/store/uk/x.jpg"', 'files_vanished'],
        [30, '[sender] io timeout after 60 seconds -- exiting', 'frontend_timeout'],
        [35, '', 'frontend_down'],
        [255, 'ssh: connect to host n3 port 22: Connection refused', 'frontend_down'],
        [12, 'rsync: connection unexpectedly closed (0 bytes received so far) [sender]', 'frontend_down'],
        [5, "@ERROR: Unknown module 'thumb'", 'rsync_error'],
        [23, 'rsync: [receiver] mkstemp "/srv/uk/.x.jpg.AbCdEf" failed: Permission denied (13)', 'rsync_error'],
      ];
      for (const [code, stderr, expected] of cases) {
        const outcome = classifyRsyncExit(code, null, stderr);
        assert.ok(!outcome.ok && outcome.errorClass === expected, `${code} ${stderr}: ${JSON.stringify(outcome)}`);
      }
      const killed = classifyRsyncExit(null, 'SIGKILL', '');
      // Our process died (the OOM killer, a kill): not the frontend's fault, which rsync_error would mark down.
      assert.ok(!killed.ok && killed.message === 'rsync killed by SIGKILL on this host (the OOM killer, or a kill): not the frontend', JSON.stringify(killed));
      assert.equal(!killed.ok && killed.errorClass, 'rsync_killed');
      const terminated = classifyRsyncExit(20, null, 'rsync error: received SIGINT, SIGTERM, or SIGHUP (code 20) at rsync.c(713) [sender=3.2.7]');
      assert.equal(!terminated.ok && terminated.errorClass, 'rsync_killed');
      // The same exit when it is the frontend's side that was signalled (a frontend shutting down): not ours.
      const theirs = classifyRsyncExit(20, null, 'rsync error: received SIGINT, SIGTERM, or SIGHUP (code 20) at io.c(586) [generator=3.2.7]');
      assert.equal(!theirs.ok && theirs.errorClass, 'rsync_error');
    });

    it('reads --stats figures', () => {
      assert.deepEqual(parseRsyncStats('Number of regular files transferred: 1,500\nTotal transferred file size: 31,234,567 bytes\n'), {
        filesTransferred: 1500,
        bytesTransferred: 31234567,
      });
    });
  });

  describe('the live rule', () => {
    const rows: PushRow[] = ['1', '2', '3'].map((id) => ({ id, country: 'uk', image_hash: id.repeat(32), attempts: 5, files: [`uk/${id}.jpg`] }));
    it('pushes each frontend only what it lacks', () => {
      const plan = planPush(rows, ['n1', 'n2'], new Set([pushKey('n1', '1'), pushKey('n1', '2'), pushKey('n1', '3'), pushKey('n2', '2')]));
      assert.deepEqual([...plan.keys()], ['n2']);
      assert.deepEqual(
        plan.get('n2')!.map((r) => r.id),
        ['1', '3'],
      );
    });

    it('a row is live only when every frontend has it; a frontend failure names the frontend and carries an ours class (never charged by the runner)', () => {
      const outcomes = new Map<string, FrontendRowOutcome>([
        [pushKey('n1', '1'), { ok: true }],
        [pushKey('n2', '1'), { ok: true }],
        [pushKey('n1', '2'), { ok: true }],
        [pushKey('n2', '2'), { ok: false, errorClass: 'frontend_down', message: 'rsync exit 10 (error in socket I/O): refused' }],
        [
          pushKey('n1', '3'),
          { ok: false, errorClass: 'thumbnail_missing', message: 'thumbnail vanished from the store during the push: uk/3.jpg', vanished: true },
        ],
      ]);
      const results = decideRowResults(rows, ['n1', 'n2'], outcomes, { maxAttempts: 6 });
      assert.deepEqual(results[0], { ok: true, row: { id: '1' } });
      assert.deepEqual(results[1], {
        ok: false,
        failure: {
          id: '2',
          attempts: 5,
          errorClass: 'frontend_down',
          retryable: true,
          reason: 'not on n2 (rsync exit 10 (error in socket I/O): refused); on n1',
        },
      });
      assert.ok(!results[2].ok && results[2].failure.errorClass === 'thumbnail_missing' && results[2].failure.attempts === 5, "the row's own trouble counts");
    });
  });
});
