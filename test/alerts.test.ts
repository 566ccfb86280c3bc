import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { sql } from 'kysely';
import type { LisConfig } from '../src/config/config-schema.ts';
import nodemailer from 'nodemailer';
import { judgeErrorRate } from '../src/alerts/error-rate.ts';
import { mailTransportOptions } from '../src/alerts/mail-channel.ts';
import { redactSecrets } from '../src/alerts/redact-secrets.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { recordEvent } from '../src/manager/manager-events.ts';
import { stalledDetail } from '../src/manager/stuck-jobs.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { createDb, type Db } from '../src/db/connect.ts';
import { spawnTs } from './helpers/processes.ts';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.ts';
import { raceWhileHeld } from './helpers/forced-race.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { readLog } from './helpers/log-files.ts';

/** A webhook receiver on 127.0.0.1 answering with `status`. */
/** A webhook receiver answering `statuses` in turn (the last one from then on). */
async function startHook(...statuses: number[]): Promise<{ url: (p: string) => string; received: Array<Record<string, unknown>>; close: () => void }> {
  const received: Array<Record<string, unknown>> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(statuses[Math.min(received.length - 1, statuses.length - 1)] ?? 204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return { url: (p) => `http://127.0.0.1:${port}${p}`, received, close: () => server.close() };
}

/** A mail's text with quoted-printable soft breaks undone. */
const bodyOf = (raw: string) =>
  raw
    .slice(raw.indexOf('\r\n\r\n') + 4)
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

/**
 * stuck_jobs released `subject` `ago` (deaths are told once they are not this fresh; deaths within seconds of each
 * other are told together).
 */
async function workerDied(t: TestDatabase, subject: string, detail: string, rows = 1, ago = '1 minute'): Promise<void> {
  await sql`INSERT INTO manager_events (at, check_name, subject, rows, detail) VALUES (now() - ${ago}::interval, 'stuck_jobs', ${subject}, ${rows}, ${detail})`.execute(
    t.db,
  );
}

/** One of each thing worth an alert, and near misses that are not. */
async function troubles(t: TestDatabase): Promise<void> {
  await sql`
    INSERT INTO datasources (country, datasource_id, enabled, disabled_reason, disabled_at) VALUES
      ('uk', 7, false, '97% of 300 rows failed in the last 6h (top reason: http_404 on 280 rows)', now()),
      ('uk', 8, false, 'by hand: feed sends watermarked photos', now());
    INSERT INTO workers (id, component, host, pid, paused_reason, paused_since) VALUES
      ('h1:10', 'thumbnaild', 'h1', 10, 'thumbnails store /srv/thumbs: 2.0% free, below thumbnail.minFreePercent 5%', now() - interval '3 minutes');
    INSERT INTO frontends (name, target, down_since, down_reason, down_host) VALUES
      ('n1', 'rsync://n1/thumbs', now() - interval '2 hours', 'rsync: connection refused', 'web2'),
      ('n2', 'rsync://n2/thumbs', now() - interval '1 minute', 'rsync: connection refused', NULL);
    INSERT INTO worker_minutes (worker_id, minute, component, done, failed) VALUES
      ('h1:11', date_trunc('minute', now()) - interval '5 minutes', 'downloadd', 100, 150),
      ('h1:11', date_trunc('minute', now()) - interval '3 hours', 'downloadd', 10000, 100),
      ('h1:12', date_trunc('minute', now()) - interval '5 minutes', 'thumbnaild', 300, 3);`.execute(t.db);
  await workerDied(t, 'h1:13', 'released 40 rows held by h1:13 (downloadd), silent for 75s', 40, '5 minutes');
  await recordEvent(t.db, { check: 'upkeep', country: 'uk', subject: 'uk', rows: 0, detail: 'failed: frontend n1: rsync: connection refused' });
  await recordEvent(t.db, { check: 'upkeep', country: 'fr', subject: 'fr', rows: 0, detail: 'ok: db_scan: 0 purged' });
}

describe('alerts to operators (a real SMTP server and webhook on loopback)', () => {
  let t: TestDatabase;
  let smtp: SmtpSink;
  const login = { user: 'ops', password: 'hunter2-smtp-secret' };
  beforeEach(async () => {
    t = await createTestDatabase();
    smtp = await startSmtpSink(login);
  });
  afterEach(async () => {
    await smtp.close();
    await t.drop();
  });

  const configWith = (alerts: Partial<LisConfig['alerts']>, password = login.password): LisConfig => ({
    ...t.config,
    alerts: {
      ...t.config.alerts,
      smtp: {
        ...t.config.alerts.smtp,
        host: '127.0.0.1',
        port: smtp.port,
        secure: false,
        user: login.user,
        password,
        from: 'imagesys@example.invalid',
        to: ['ops@example.invalid'],
      },
      ...alerts,
    },
  });

  async function check(config: LisConfig, db: Db = t.db): Promise<string> {
    const log = createLogger({ component: 'managerd', log: config.log, screen: false });
    try {
      return await runCheck('alerts', { config, db, log });
    } finally {
      await closeLogger(log);
    }
  }

  it('mails and posts each kind of trouble once, with what to do, and not again within the dedupe window', async () => {
    await troubles(t);
    const hook = await startHook();
    try {
      const config = configWith({ webhookUrl: hook.url('/alerts') });
      assert.match(await check(config), /^alerts: 6 sent, 0 already sent/);
      const subjects = smtp.mails.map((m) => m.subject).sort();
      assert.deepEqual(subjects, [
        '[ImageSys] datasource 7 of UK disabled',
        '[ImageSys] downloadd: error rate far above its usual',
        '[ImageSys] frontend n1 unreachable for over 30 min',
        '[ImageSys] thumbnaild on h1 paused: a store is full or unwritable',
        '[ImageSys] weekly upkeep failed for UK',
        '[ImageSys] worker h1:13 died',
      ]);
      for (const mail of smtp.mails) {
        assert.deepEqual(mail.to, ['ops@example.invalid']);
        assert.equal(mail.from, 'imagesys@example.invalid');
        assert.match(bodyOf(mail.raw), /What to do: \S/);
      }
      const text = (s: string) => bodyOf(smtp.mails.find((m) => m.subject.includes(s))!.raw);
      assert.match(text('datasource 7'), /97% of 300 rows failed.*\n*.*lis datasource enable uk 7/);
      assert.match(text('error rate'), /60\.0% of 250 rows failed in the last 60 min; its usual 1\.0%/);
      assert.match(text('paused'), /2\.0% free, below thumbnail\.minFreePercent/);
      // Which pushing host it refuses: another may reach it (hosts allow, a key or password set up on one host only).
      assert.match(text('frontend n1'), /down since \S+ for lis_pusherd on web2: rsync: connection refused/);
      assert.match(text('frontend n1'), /lets web2 in \(hosts allow, auth users and the password file, authorized_keys\)/);
      assert.match(text('frontend n1'), /rsync: connection refused/);
      assert.equal(hook.received.length, 6);
      assert.ok(hook.received.every((a) => a.source === 'imagesys' && typeof a.action === 'string' && typeof a.key === 'string'));

      assert.match(await check(config), /^alerts: 0 sent, 6 already sent/);
      assert.equal(smtp.mails.length, 6, 'nothing repeated within alerts.dedupeMinutes');
      // A new trouble of a kind already told (another worker died) is told.
      await workerDied(t, 'h2:20', 'released 3 rows held by h2:20 (pusherd), silent for 90s', 3);
      assert.match(await check(config), /^alerts: 1 sent, 6 already sent/);
      assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] worker h2:20 died');
    } finally {
      hook.close();
    }
  });

  it('two managers (two hosts) running the alerts check at the same moment send each alert once', async () => {
    await troubles(t);
    const hook = await startHook();
    try {
      const config = configWith({ webhookUrl: hook.url('/alerts') });
      const [a, b] = await Promise.all([check({ ...config, host: 'm1' }), check({ ...config, host: 'm2' })]);
      const sent = (r: string) => Number(/^alerts: (\d+) sent/.exec(r)![1]);
      assert.equal(sent(a) + sent(b), 6, `${a}\n${b}`);
      assert.equal(smtp.mails.length, 6);
      assert.equal(hook.received.length, 6);
    } finally {
      hook.close();
    }
  });

  it('two managers (two hosts) running the alerts check at the same moment send alerts.maxPerHour between them, not each', async () => {
    await troubles(t);
    const hook = await startHook();
    // Each manager on a pool of its own, as on two hosts.
    const second = createDb(t.url, 2);
    try {
      const config = configWith({ maxPerHour: 2, webhookUrl: hook.url('/alerts') });
      // alerts_sent is held against writes (reads go on) until both managers wait to write it.
      const [a, b] = await raceWhileHeld(
        t,
        sql`LOCK TABLE alerts_sent IN SHARE MODE`,
        () => Promise.all([check({ ...config, host: 'm1' }), check({ ...config, host: 'm2' }, second)]),
        2,
        'both managers to wait to claim',
      );
      const sent = (r: string) => Number(/^alerts: (\d+) sent/.exec(r)![1]);
      assert.equal(sent(a) + sent(b), 2, `${a}\n${b}`);
      assert.equal(smtp.mails.length, 2);
      assert.equal(hook.received.length, 2);
      const claims = await t.db.selectFrom('alerts_sent').select(['key', 'delivered_at']).execute();
      assert.equal(claims.length, 2, JSON.stringify(claims));
      assert.ok(claims.every((c) => c.delivered_at));
    } finally {
      await second.destroy();
      hook.close();
    }
  });

  it("names a dead worker's own log file and service (per component and country) in what to do", async () => {
    await sql`INSERT INTO workers (id, component, host, pid, country, heartbeat_at, stopped_at) VALUES ('h3:30:ab', 'pusherd', 'h3', 30, 'de', now() - interval '3 minutes', now() - interval '1 minute')`.execute(
      t.db,
    );
    await workerDied(t, 'h3:30:ab', 'released 5 rows held by h3:30:ab (pusherd), silent for 70s', 5);
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    const text = bodyOf(smtp.mails[0].raw);
    assert.match(text, /var\/log\/pusherd\.de\.error\.log/);
    assert.match(text, /servicectl start imagesys-pusherd --country de/);
  });

  it('a worker the manager released that is beating again is told as back, not as dead to be started', async () => {
    // h5:50 beat again and registered anew (same id) after the manager released it; h5:51 really died. A minute apart.
    await sql`
      INSERT INTO workers (id, component, host, pid, country, heartbeat_at, stopped_at) VALUES
        ('h5:50:aa', 'downloadd', 'h5', 50, 'uk', now(), NULL),
        ('h5:51:bb', 'thumbnaild', 'h5', 51, 'uk', now() - interval '3 minutes', now() - interval '40 seconds')`.execute(t.db);
    await workerDied(t, 'h5:50:aa', 'released 7 rows held by h5:50:aa, silent or without progress for 130s', 7, '100 seconds');
    await workerDied(t, 'h5:51:bb', 'released 7 rows held by h5:51:bb, silent or without progress for 130s', 7, '40 seconds');
    assert.match(await check(configWith({})), /^alerts: 2 sent/);
    const subjects = smtp.mails.map((m) => m.subject).sort();
    assert.deepEqual(subjects, ['[ImageSys] worker h5:50:aa stalled and is back', '[ImageSys] worker h5:51:bb died']);
    const back = bodyOf(smtp.mails.find((m) => m.subject.includes('h5:50'))!.raw);
    assert.doesNotMatch(back, /servicectl start/, 'nothing to start');
    assert.match(back, /database/);
  });

  it('workers released together (the database down, or restored from a backup) are one alert naming each, not a mail each', async () => {
    // After a restore: 25 workers of the backup found dead in one stuck_jobs run, 2 of which run still and beat again.
    const ids = Array.from({ length: 25 }, (_, i) => `h4:${100 + i}:aa`);
    for (const [i, id] of ids.entries()) {
      const back = i < 2;
      await sql`INSERT INTO workers (id, component, host, pid, country, heartbeat_at, stopped_at)
                VALUES (${id}, ${i % 2 ? 'pusherd' : 'downloadd'}, 'h4', ${100 + i}, 'uk',
                        ${back ? sql`now()` : sql`now() - interval '2 hours'`}, ${back ? null : sql`now() - interval '1 minute'`})`.execute(t.db);
      await workerDied(t, id, stalledDetail(3, id, i % 2 ? 'pusherd' : 'downloadd', 7200), 3, `${60_000 - i * 100} milliseconds`);
    }
    // Within alerts.maxPerHour (20) they were 20 mails, and 5 more the next hour.
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    assert.equal(smtp.mails.length, 1);
    assert.equal(smtp.mails[0].subject, '[ImageSys] 25 workers stalled at once: 2 back, 23 died');
    const text = bodyOf(smtp.mails[0].raw);
    assert.match(text, /h4:100:aa is back: released 3 rows held by h4:100:aa \(downloadd\)/);
    assert.match(text, /h4:102:aa died: released 3 rows held by h4:102:aa \(downloadd\)/);
    assert.match(text, /and 5 more \(lis worker-report\)/);
    assert.match(text, /75 rows they held are back in the queue/);
    assert.match(text, /restored from a backup/);
    // Each service to start named once.
    assert.equal(text.match(/servicectl start imagesys-downloadd --country uk/g)?.length, 1, text);
    assert.equal(text.match(/servicectl start imagesys-pusherd --country uk/g)?.length, 1, text);
    assert.match(await check(configWith({})), /^alerts: 0 sent, 1 already sent/);

    // A death a run later is told on its own. One whose run may still grow (its newest death is fresh) waits for it:
    // told as it was, the run's later deaths would have been folded into an alert already sent.
    await workerDied(t, 'h4:200:aa', stalledDetail(1, 'h4:200:aa', 'downloadd', 70), 1, '35 seconds');
    await workerDied(t, 'h4:201:aa', stalledDetail(1, 'h4:201:aa', 'downloadd', 70), 1, '28 seconds');
    assert.match(await check(configWith({})), /^alerts: 0 sent/);
    await sql`UPDATE manager_events SET at = at - interval '5 seconds' WHERE subject IN ('h4:200:aa', 'h4:201:aa')`.execute(t.db);
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] 2 workers died at once');
  });

  it('a stalled worker that held no rows (an idle lis_imaged whose heartbeat hung) is not told that its rows went back to the queue', async () => {
    await sql`
      INSERT INTO workers (id, component, host, pid, country, heartbeat_at, stopped_at) VALUES
        ('h9:90:aa', 'imaged', 'h9', 90, NULL, now(), NULL),
        ('h9:91:bb', 'imaged', 'h9', 91, NULL, now() - interval '3 minutes', now() - interval '40 seconds')`.execute(t.db);
    await workerDied(t, 'h9:90:aa', stalledDetail(0, 'h9:90:aa', 'imaged', 130), 0, '100 seconds');
    await workerDied(t, 'h9:91:bb', stalledDetail(0, 'h9:91:bb', 'imaged', 130), 0, '40 seconds');
    assert.match(await check(configWith({})), /^alerts: 2 sent/);
    const body = (who: string) => bodyOf(smtp.mails.find((m) => m.subject.includes(who))!.raw);
    for (const who of ['h9:90', 'h9:91']) {
      assert.doesNotMatch(body(who), /released 0|rows went back|rows are back/, body(who));
      assert.match(body(who), /held no rows/, who);
    }
    assert.match(body('h9:90'), /its heartbeat hung/);
  });

  it("waits a moment before telling a worker's death, so that one which beats again is not told as dead", async () => {
    // stuck_jobs and alerts run in the same second: the released worker has not had a heartbeat to come back yet.
    await sql`INSERT INTO workers (id, component, host, pid, country, heartbeat_at, stopped_at) VALUES ('h6:60:cc', 'pusherd', 'h6', 60, 'uk', now() - interval '70 seconds', now())`.execute(
      t.db,
    );
    await recordEvent(t.db, { check: 'stuck_jobs', subject: 'h6:60:cc', rows: 1, detail: 'released 1 rows held by h6:60:cc, silent for 70s' });
    assert.match(await check(configWith({})), /^alerts: 0 sent/);
    // Its next heartbeat: registered again.
    await sql`UPDATE workers SET stopped_at = NULL, heartbeat_at = now() WHERE id = 'h6:60:cc'`.execute(t.db);
    await sql`UPDATE manager_events SET at = now() - interval '1 minute'`.execute(t.db);
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    assert.equal(smtp.mails[0].subject, '[ImageSys] worker h6:60:cc stalled and is back');
  });

  it('says "recovered" once a paused store resumes, and tells a new pause again, however soon', async () => {
    await sql`INSERT INTO workers (id, component, host, pid, country, paused_reason, paused_since)
              VALUES ('h7:70:aa', 'thumbnaild', 'h7', 70, 'uk', 'thumbnails store /srv/thumbs: 2.0% free', now())`.execute(t.db);
    // Told three days ago and long over (before recovered notices existed): no notice for it now.
    await sql`INSERT INTO alerts_sent (key, kind, subject, sent_at, delivered_at) VALUES ('store_paused:h8:pusherd', 'store_paused', 'pusherd on h8 paused', now() - interval '3 days', now() - interval '3 days')`.execute(
      t.db,
    );
    const config = configWith({});
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] thumbnaild on h7 paused: a store is full or unwritable');
    assert.match(await check(config), /^alerts: 0 sent, 1 already sent/);

    await sql`UPDATE workers SET paused_reason = NULL, paused_since = NULL`.execute(t.db);
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] recovered: thumbnaild on h7 paused: a store is full or unwritable');
    assert.match(bodyOf(smtp.mails.at(-1)!.raw), /Nothing to do/);
    assert.match(await check(config), /^alerts: 0 sent, 0 already sent/, 'told once');

    // Full again an hour later, well within alerts.dedupeMinutes: a new trouble, told.
    await sql`UPDATE workers SET paused_reason = 'thumbnails store /srv/thumbs: 1.0% free', paused_since = now()`.execute(t.db);
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] thumbnaild on h7 paused: a store is full or unwritable');
    assert.equal(smtp.mails.length, 3);
  });

  it('tells of S3 refusing us a datasource\'s bucket at once, and "recovered" once no row of it was refused for 15 minutes', async () => {
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n) VALUES
                ('uk', 4, date_trunc('minute', now()) - interval '2 minutes', 'download', 's3_refused', 3),
                ('uk', 4, date_trunc('minute', now()) - interval '1 minute', 'download', 's3_refused', 2),
                ('uk', 5, date_trunc('minute', now()) - interval '40 minutes', 'download', 's3_refused', 9)`.execute(t.db);
    const config = configWith({});
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] S3 refuses us the originals of UK datasource 4');
    assert.match(bodyOf(smtp.mails.at(-1)!.raw), /5 rows refused in the last 15 min/);
    assert.match(bodyOf(smtp.mails.at(-1)!.raw), /imaged\.s3 entry/);
    await sql`UPDATE datasource_minutes SET minute = minute - interval '20 minutes'`.execute(t.db);
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] recovered: S3 refuses us the originals of UK datasource 4');
  });

  it('sends at most alerts.maxPerHour an hour; the rest wait', async () => {
    await troubles(t);
    const config = configWith({ maxPerHour: 2 });
    assert.match(await check(config), /^alerts: 2 sent, 0 already sent, 4 held back by the hourly cap/);
    assert.equal(smtp.mails.length, 2);
    assert.match(readLog(path.join(config.log.dir, 'managerd.log')), /4 alerts held back by alerts\.maxPerHour \(2\)/);
    // The hour passes (as far as the cap knows): the held ones go out.
    await sql`UPDATE alerts_sent SET sent_at = now() - interval '61 minutes'`.execute(t.db);
    assert.match(await check(configWith({ maxPerHour: 20, dedupeMinutes: 24 * 60 })), /^alerts: 4 sent, 2 already sent/);
    assert.equal(new Set(smtp.mails.map((m) => m.subject)).size, 6);
  });

  it('a flood of one kind (a worker crash-looping) does not spend the hourly cap before the other kinds get theirs', async () => {
    // A worker dying every two minutes: 25 deaths within the hour, each its own alert.
    for (let i = 0; i < 25; i++)
      await workerDied(t, `h1:${100 + i}`, `released 1 rows held by h1:${100 + i} (downloadd), silent for 70s`, 1, `${1 + 2 * i} minutes`);
    await recordEvent(t.db, { check: 'upkeep', country: 'uk', subject: 'uk', rows: 0, detail: 'failed: frontend n1: rsync: connection refused' });
    await sql`INSERT INTO frontends (name, target, down_since, down_reason) VALUES ('n1', 'rsync://n1/thumbs', now() - interval '2 hours', 'rsync: connection refused')`.execute(
      t.db,
    );
    assert.match(await check(configWith({ maxPerHour: 5 })), /^alerts: 5 sent, 0 already sent, 22 held back/);
    const subjects = smtp.mails.map((m) => m.subject);
    assert.ok(subjects.includes('[ImageSys] weekly upkeep failed for UK'), subjects.join('\n'));
    assert.ok(subjects.includes('[ImageSys] frontend n1 unreachable for over 30 min'), subjects.join('\n'));
  });

  it("judges each country's daemon by its own rows: a big country's good work does not hide a small one's failing", async () => {
    await sql`
      INSERT INTO worker_minutes (worker_id, minute, component, country, done, failed) VALUES
        ('h1:21', date_trunc('minute', now()) - interval '5 minutes', 'downloadd', 'uk', 100, 150),
        ('h1:21', date_trunc('minute', now()) - interval '3 hours', 'downloadd', 'uk', 10000, 100),
        ('h1:22', date_trunc('minute', now()) - interval '5 minutes', 'downloadd', 'de', 20000, 100),
        ('h1:22', date_trunc('minute', now()) - interval '3 hours', 'downloadd', 'de', 90000, 900);`.execute(t.db);
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    assert.equal(smtp.mails[0].subject, '[ImageSys] downloadd UK: error rate far above its usual');
    assert.match(bodyOf(smtp.mails[0].raw), /60\.0% of 250 rows failed in the last 60 min; its usual 1\.0%/);
  });

  it('tells of a stage failing by our own fault (a bug) through its error rate, as no other alert does', async () => {
    await sql`
      INSERT INTO worker_minutes (worker_id, minute, component, country, done, failed, ours) VALUES
        ('h1:31', date_trunc('minute', now()) - interval '5 minutes', 'thumbnaild', 'uk', 100, 0, 150),
        ('h1:31', date_trunc('minute', now()) - interval '3 hours', 'thumbnaild', 'uk', 10000, 100, 0);`.execute(t.db);
    assert.match(await check(configWith({})), /^alerts: 1 sent/);
    assert.equal(smtp.mails[0].subject, '[ImageSys] thumbnaild UK: error rate far above its usual');
    assert.match(bodyOf(smtp.mails[0].raw), /60\.0% of 250 rows failed in the last 60 min; its usual 1\.0%/);
  });

  it('sends an alert whose claim a manager left undelivered (it died before sending), once the claim is old; not while another may be sending it', async () => {
    await recordEvent(t.db, { check: 'upkeep', country: 'uk', subject: 'uk', rows: 0, detail: 'failed: frontend n1: rsync: connection refused' });
    const config = configWith({});
    // Claimed a moment ago by another manager, which may be sending it now.
    const { id } = await t.db.selectFrom('manager_events').select('id').where('check_name', '=', 'upkeep').executeTakeFirstOrThrow();
    const key = `upkeep_failed:uk:${id}`;
    await sql`INSERT INTO alerts_sent (key, kind, subject, sent_at, delivered_at) VALUES (${key}, 'upkeep_failed', 'weekly upkeep failed for UK', now() - interval '30 seconds', NULL)`.execute(
      t.db,
    );
    assert.match(await check(config), /^alerts: 0 sent, 1 already sent/);
    // Claimed ten minutes ago and never delivered: its manager died between the claim and the send.
    await sql`UPDATE alerts_sent SET sent_at = now() - interval '10 minutes'`.execute(t.db);
    assert.match(await check(config), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] weekly upkeep failed for UK');
    const { delivered_at } = await t.db.selectFrom('alerts_sent').select('delivered_at').executeTakeFirstOrThrow();
    assert.ok(delivered_at, 'marked delivered');
    assert.match(await check(config), /^alerts: 0 sent, 1 already sent/, 'and not again');
  });

  it('sends an alert to the webhook again when the receiver fails for a moment (a 503), within the same run', async () => {
    await recordEvent(t.db, { check: 'upkeep', country: 'uk', subject: 'uk', rows: 0, detail: 'failed: frontend n1: rsync: connection refused' });
    const hook = await startHook(503, 204);
    try {
      assert.match(await check(configWith({ smtp: { ...t.config.alerts.smtp, host: null }, webhookUrl: hook.url('/alerts') })), /^alerts: 1 sent/);
      assert.equal(hook.received.length, 2, 'the 503, then the retry');
      assert.equal(hook.received[0].key, hook.received[1].key, 'the same alert, which the receiver can tell by its key');
    } finally {
      hook.close();
    }
  });

  it('never writes the webhook URL or the SMTP password to a log, and tries an undelivered alert again', async () => {
    await troubles(t);
    // A status got does not retry (a 500 is tried three times, 1 s and 2 s apart: 18 s for the six alerts).
    const hook = await startHook(403);
    try {
      const webhookUrl = hook.url('/hooks/T0KEN-very-secret-path');
      const config = configWith({ webhookUrl }, 'wrong-password-also-secret');
      assert.match(await check(config), /^alerts: 0 sent, 0 already sent, 0 held back by the hourly cap, 6 undelivered/);
      assert.equal(smtp.mails.length, 0, 'the SMTP server refused the login');
      assert.equal(hook.received.length, 6, 'the webhook was tried');
      const logs = fs
        .readdirSync(config.log.dir)
        .map((f) => fs.readFileSync(path.join(config.log.dir, f), 'utf8'))
        .join('\n');
      assert.match(logs, /mail \(alerts\.smtp\) failed for "datasource 7 of UK disabled": .*Invalid/);
      assert.match(logs, /the webhook \(alerts\.webhookUrl\) failed for "datasource 7 of UK disabled": .*403/);
      for (const secret of ['T0KEN-very-secret-path', webhookUrl, 'wrong-password-also-secret', login.password])
        assert.ok(!logs.includes(secret), `a log has ${secret}`);
      const sent = await t.db.selectFrom('alerts_sent').select('key').execute();
      assert.deepEqual(sent, [], 'undelivered alerts are not marked sent');
      // Fixed: they go out on the next run.
      assert.match(await check(configWith({})), /^alerts: 6 sent/);
    } finally {
      hook.close();
    }
  });

  it('never writes a webhook token carried in the host name (https://<token>.m.example/) to a log', async function () {
    this.timeout(30_000);
    await sql`INSERT INTO datasources (country, datasource_id, enabled, disabled_reason, disabled_at) VALUES ('uk', 9, false, '95% of 100 rows failed', now())`.execute(
      t.db,
    );
    const config = configWith({ webhookUrl: 'http://t0ken-8f3a2c.invalid/' });
    assert.match(await check(config), /^alerts: 1 sent/, 'the mail took it');
    const logs = fs
      .readdirSync(config.log.dir)
      .map((f) => fs.readFileSync(path.join(config.log.dir, f), 'utf8'))
      .join('\n');
    assert.match(logs, /the webhook \(alerts\.webhookUrl\) failed for "datasource 9 of UK disabled": .*ENOTFOUND/);
    assert.ok(!logs.includes('t0ken-8f3a2c'), logs);
  });

  it('an SMTP server that never answers costs one timeout a run, not one per alert; the webhook still gets each', async function () {
    this.timeout(30_000);
    const connections: net.Socket[] = [];
    const hung = net.createServer((socket) => connections.push(socket));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', () => resolve()));
    const hook = await startHook();
    try {
      for (const id of [11, 12, 13])
        await sql`INSERT INTO datasources (country, datasource_id, enabled, disabled_reason, disabled_at) VALUES ('uk', ${id}, false, '95% of 100 rows failed', now())`.execute(
          t.db,
        );
      const config = configWith({ webhookUrl: hook.url('/alerts') });
      config.alerts.smtp = { ...config.alerts.smtp, port: (hung.address() as net.AddressInfo).port, timeoutSeconds: 1 };
      assert.match(await check(config), /^alerts: 3 sent/, 'the webhook took them');
      assert.equal(hook.received.length, 3);
      assert.equal(connections.length, 1, 'the mail server was tried once this run, not once per alert');
    } finally {
      for (const socket of connections) socket.destroy();
      hung.close();
      hook.close();
    }
  });

  it('the executable lis_managerd posts an alert to the webhook (its HTTP client is loaded when an alert is sent)', async function () {
    this.timeout(30_000);
    await recordEvent(t.db, { check: 'upkeep', country: 'uk', subject: 'uk', rows: 0, detail: 'failed: frontend n1: rsync: connection refused' });
    const hook = await startHook();
    try {
      const file = t.writeConfig({ alerts: { webhookUrl: hook.url('/alerts') } });
      const run = spawnTs('bin/lis_managerd', ['--check', 'alerts', '--config', file]);
      assert.equal((await run.exited).code, 0, run.output());
      assert.match(run.output(), /alerts: 1 sent/);
      assert.equal(hook.received.length, 1, run.output());
      assert.equal(hook.received[0].subject, 'weekly upkeep failed for UK');
    } finally {
      hook.close();
    }
  });

  it('`lis config` shows neither the webhook URL nor the SMTP password; LIS_SMTP_PASSWORD sets it', async () => {
    const file = t.writeConfig({
      alerts: { webhookUrl: 'https://hooks.example.invalid/T0KEN-in-config', smtp: { host: 'mail.example.invalid', password: 'pw-in-config-secret' } },
    });
    const run = spawnTs('bin/lis', ['--config', file, 'config'], { LIS_SMTP_PASSWORD: 'pw-from-env-secret' });
    assert.equal((await run.exited).code, 0, run.output());
    const shown = JSON.parse(run.output().slice(run.output().indexOf('{'))) as LisConfig;
    assert.equal(shown.alerts.smtp.host, 'mail.example.invalid');
    assert.equal(shown.alerts.smtp.password, '***');
    assert.equal(shown.alerts.webhookUrl, '***');
    for (const secret of ['T0KEN-in-config', 'pw-in-config-secret', 'pw-from-env-secret']) assert.ok(!run.output().includes(secret), secret);
    assert.equal(parseConfig({ alerts: { smtp: { password: 'a' } } }, { LIS_SMTP_PASSWORD: 'b' }).alerts.smtp.password, 'b');
  });

  it('judges error rates against the usual, and redacts secrets from text', () => {
    const policy = { windowMinutes: 60, baselineHours: 168, factor: 3, minRate: 0.2, minRows: 100 };
    const s = { component: 'downloadd', country: 'uk', done: 100, failed: 150, baselineDone: 9000, baselineFailed: 1000 };
    assert.equal(judgeErrorRate(s, policy), '60.0% of 250 rows failed in the last 60 min; its usual 10.0% over the 168h before (10000 rows)');
    assert.equal(judgeErrorRate({ ...s, baselineFailed: 5000, baselineDone: 5000 }, policy), null, 'a stage that always fails half is not news');
    assert.equal(judgeErrorRate({ ...s, done: 10, failed: 15 }, policy), null, 'too few rows');
    assert.equal(judgeErrorRate({ ...s, done: 1000, failed: 150 }, policy), null, 'under minRate');
    assert.match(judgeErrorRate({ ...s, baselineDone: 0, baselineFailed: 0 }, policy)!, /no work in the 168h before/);
    assert.equal(
      redactSecrets('POST https://hooks.example/T/abc?x=1 failed; /T/abc?x=1; pw hunter2', ['https://hooks.example/T/abc?x=1', 'hunter2']),
      'POST [redacted] failed; [redacted]; pw [redacted]',
    );
    assert.equal(
      redactSecrets('getaddrinfo ENOTFOUND eo9x2.m.example; connect ECONNREFUSED 127.0.0.1:9', ['https://eo9x2.m.example/', 'http://127.0.0.1:9/']),
      'getaddrinfo ENOTFOUND [redacted]; connect ECONNREFUSED 127.0.0.1:9',
    );
  });
});

describe('alert mail: the SMTP login goes over TLS only', () => {
  it('requires STARTTLS with a login to a server beyond this machine: one offering none (or a network stripping it) is never sent the password', async () => {
    const login = { user: 'alerts', password: 'smtp-s3cret' };
    const smtp = await startSmtpSink(login); // offers no STARTTLS
    try {
      const settings = parseConfig({ alerts: { smtp: { host: 'mail.example.com', port: smtp.port, ...login, to: ['ops@example.invalid'] } } }, {}).alerts.smtp;
      // The options for mail.example.com, used against the real server on loopback (standing in for the network's).
      const transport = nodemailer.createTransport({ ...mailTransportOptions({ ...settings, host: 'mail.example.com' }), host: '127.0.0.1' });
      try {
        await assert.rejects(transport.sendMail({ from: settings.from, to: settings.to, subject: 'x', text: 'y' }), /STARTTLS/);
      } finally {
        transport.close();
      }
      assert.deepEqual(smtp.logins, [], 'no login was sent in plain text');
      assert.equal(smtp.mails.length, 0);
      // A relay on this machine may take a login in plain text (nobody on the network sees loopback); no login, nothing to hide.
      for (const host of ['127.0.0.1', 'localhost', '::1']) assert.equal(mailTransportOptions({ ...settings, host }).requireTLS, false, host);
      assert.equal(mailTransportOptions({ ...settings, host: 'mail.example.com', user: null }).requireTLS, false);
      assert.equal(mailTransportOptions({ ...settings, host: 'mail.example.com', secure: true }).requireTLS, false, 'TLS from the first byte');
    } finally {
      await smtp.close();
    }
  });
});
