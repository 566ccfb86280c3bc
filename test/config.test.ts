import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { configFileExposure, secretKeysIn } from '../src/config/config-file-exposure.ts';
import { jsonSyntaxError } from '../src/config/json-syntax-error.ts';
import { loadConfig, parseConfig } from '../src/config/load-config.ts';
import { parseCountry } from '../src/config/country.ts';
import { serviceQueryBounds } from '../src/db/query-bounds.ts';
import { formatLine } from '../src/log/line-format.ts';
import { ProgressLine, formatProgress } from '../src/daemon/progress-line.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { stopDatabaseWaitMs } from '../src/daemon/stop-wait.ts';
import { withSecretsHidden } from '../src/cli/config-command.ts';

describe('config', () => {
  it('runs on defaults with no file at all', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-config-'));
    const config = loadConfig({ env: {}, cwd: dir });
    assert.equal(config.database.url, null);
    assert.equal(config.queue.chunkSize, 500);
    assert.equal(config.database.embedded.dataDir, path.join(dir, 'var/pg'));
    assert.equal(config.host, os.hostname());
    fs.rmSync(dir, { recursive: true });
  });

  it('takes the database URL and host from the environment', () => {
    const config = parseConfig({ database: { url: 'postgres://a@b/c' } }, { LIS_DATABASE_URL: 'postgresql://x@y/z', LIS_HOST: 'n7' });
    assert.equal(config.database.url, 'postgresql://x@y/z');
    assert.equal(config.host, 'n7');
    assert.throws(() => parseConfig({}, { LIS_DATABASE_URL: 'mysql://x' }), /LIS_DATABASE_URL is not valid/);
  });

  it('holds LIS_HOST to the rule of `host`: no spaces or colons (worker ids are host:pid:random)', () => {
    assert.throws(() => parseConfig({ host: 'web 1' }, {}), /host: a host name without spaces or colons/);
    for (const bad of ['web 1', 'web1:8080']) {
      assert.throws(
        () => parseConfig({}, { LIS_HOST: bad }),
        (error: Error & { code?: string }) =>
          error.code === 'ERR_CONFIG' && error.message === `LIS_HOST ${JSON.stringify(bad)} is not valid: a host name without spaces or colons`,
        bad,
      );
    }
    assert.equal(parseConfig({ host: 'web1' }, { LIS_HOST: 'web2.internal' }).host, 'web2.internal');
  });

  it('names every bad key and says what it expects', () => {
    assert.throws(
      () => parseConfig({ queue: { chunkSize: 'big', backoff: { jitter: 2 } }, log: { level: 'loud' }, hots: 'x' }, {}),
      (error: Error) => {
        assert.match(error.message, /queue\.chunkSize: Invalid input: expected number, received string/);
        assert.match(error.message, /queue\.backoff\.jitter: Too big/);
        assert.match(error.message, /log\.level: Invalid option: expected one of "error"\|"warn"\|"info"\|"debug"/);
        assert.match(error.message, /^ {2}hots: unknown key; did you mean host\?$/m);
        return true;
      },
    );
  });

  it('names an unknown key by its whole path, with the key it most likely misspells, or else the keys there are', () => {
    assert.throws(
      () =>
        parseConfig(
          {
            queue: { chunksize: 10, foo: 1 },
            metrics: { ports: { downloadD: 9401 } },
            thumbnail: { presets: { small: { width: 100, height: 90, mode: 'crop', quality: 80 } } },
          },
          {},
        ),
      (error: Error) => {
        assert.match(error.message, /^ {2}queue\.chunksize: unknown key; did you mean queue\.chunkSize\?$/m);
        assert.match(
          error.message,
          /^ {2}queue\.foo: unknown key \(the keys here: chunkSize, maxAttempts, backoff, pollSeconds, heartbeatSeconds, progressTimeoutSeconds, oursRetrySeconds\)$/m,
        );
        assert.match(error.message, /^ {2}metrics\.ports\.downloadD: unknown key; did you mean metrics\.ports\.downloadd\?$/m);
        assert.match(error.message, /^ {2}thumbnail\.presets\.small\.quality: unknown key \(the keys here: width, height, mode\)$/m);
        return true;
      },
    );
  });

  it('says what a name must be, and each form a value may take, where zod says only "invalid"', () => {
    assert.throws(
      () => parseConfig({ thumbnail: { presets: { Small: { width: 120, height: 90, mode: 'crop' } } }, log: { maxFiles: true } }, {}),
      (error: Error) => {
        assert.match(
          error.message,
          /^ {2}thumbnail\.presets\.Small: not a valid name here: a preset name: a lower-case letter, then up to 15 letters or digits$/m,
        );
        assert.match(
          error.message,
          /^ {2}log\.maxFiles: Invalid input: expected number, received boolean; or Invalid input: expected string, received boolean$/m,
        );
        assert.doesNotMatch(error.message, /Invalid key in record/);
        return true;
      },
    );
  });

  it('says a webhook must be an http(s) URL, not only that it is "invalid"', () => {
    assert.throws(
      () => parseConfig({ alerts: { webhookUrl: 'ftp://hooks.example/x' }, manager: { webhookUrl: 'hooks.example/x' } }, {}),
      (error: Error) => {
        assert.match(error.message, /^ {2}alerts\.webhookUrl: an http:\/\/ or https:\/\/ URL$/m);
        assert.match(error.message, /^ {2}manager\.webhookUrl: an http:\/\/ or https:\/\/ URL$/m);
        return true;
      },
    );
    assert.equal(parseConfig({ alerts: { webhookUrl: 'https://hooks.example/x' } }, {}).alerts.webhookUrl, 'https://hooks.example/x');
  });

  it('says where a file is not JSON by line and column, never quoting it (a secret sits beside the fault)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-config-'));
    const file = path.join(dir, 'imagesys.json');
    const cases: Array<[text: string, where: string]> = [
      // A password pasted without its quotes; a stray character after a database URL; a comma forgotten.
      [
        '{\n  "alerts": { "smtp": {\n    "password": Sup3rSecretPw } }\n}\n',
        'line 3, column 17: a character that cannot be here (a value is a string in double quotes',
      ],
      ['{ "database": { "url": "postgres://imagesys:Sup3rSecretPw@db1/imagesys"x } }', 'line 1, column 72: a character that cannot be here'],
      ['{ "alerts": { "smtp": { "password": "Sup3rSecretPw" "to": [] } } }', "line 1, column 53: expected ',' between two values"],
      ['{ "alerts": { "smtp": { "password": "Sup3r\tSecretPw" } } }', 'line 1, column 37: in the string that starts here, a control character'],
      ['{ "imaged": { "s3": { "b": { "secretAccessKey": "Sup3rSecretPw', 'line 1, column 49: a string is not closed'],
    ];
    for (const [text, where] of cases) {
      fs.writeFileSync(file, text);
      assert.throws(
        () => loadConfig({ env: {}, cwd: dir }),
        (error: Error) => {
          assert.ok(error.message.startsWith(`config file ${file} is not valid JSON: ${where}`), error.message);
          assert.ok(!/Sup3|cretPw/.test(error.message), error.message);
          return true;
        },
      );
    }
    // The checker agrees with JSON.parse on what is JSON.
    for (const text of [
      '{}',
      ' [1, -2.5e3, "a\\u00e9\\n", true, false, null, {"a": []}] ',
      '"x"',
      '0',
      '{"a":1,}',
      '[1,]',
      '01',
      '{"a" 1}',
      '[',
      '',
      'tru',
      '"\\x"',
      '{} {}',
    ])
      assert.equal(
        jsonSyntaxError(text) === null,
        (() => {
          try {
            JSON.parse(text);
            return true;
          } catch {
            return false;
          }
        })(),
        text,
      );
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('warns, in lis config and at every daemon start, of a config file every user may read that holds secrets', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-config-'));
    try {
      const file = path.join(dir, 'config.json');
      fs.writeFileSync(
        file,
        JSON.stringify({
          // Port 1: nothing listens, so that a daemon started with it stops at once.
          database: { url: 'postgres://imagesys:db-secret@127.0.0.1:1/imagesys' },
          imaged: { s3: { photos: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 's3-secret' } } },
          push: { daemonPasswordFile: '/etc/imagesys/rsync.secret' },
          log: { dir: path.join(dir, 'log') },
        }),
      );
      fs.chmodSync(file, 0o644);
      // In a folder closed to others (mkdtemp's 0700) the file is out of their reach, whatever its mode.
      assert.equal(configFileExposure(file), null);
      fs.chmodSync(dir, 0o755);
      const warning = configFileExposure(file);
      assert.equal(
        warning,
        `config file ${file} is readable by every user (mode 644) and holds secrets (database.url, imaged.s3.photos.secretAccessKey): ` +
          `chmod o-r ${file} (its group or owner being the daemons' user), or give them in the environment (LIS_DATABASE_URL, LIS_SMTP_PASSWORD)`,
      );
      // \`lis config\` says so (and still prints the configuration, its secrets hidden).
      const run = spawnTs('bin/lis', ['--config', file, 'config']);
      assert.equal((await run.exited).code, 0, run.output());
      assert.ok(run.output().includes(`# warning: ${warning}`), run.output());
      assert.ok(!run.output().includes('db-secret'), run.output());
      const daemon = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', file]);
      assert.equal((await daemon.exited).code, 1, daemon.output());
      assert.match(daemon.output(), /WARN downloadd::main\[\d+\]:UK config file .* is readable by every user \(mode 644\) and holds secrets \(database\.url, /);
      // Closed to others, or holding no secret (a password file's path is none): nothing to say.
      fs.chmodSync(file, 0o640);
      assert.equal(configFileExposure(file), null);
      fs.writeFileSync(file, JSON.stringify({ database: { url: 'postgres://imagesys@db1/imagesys' }, push: { daemonPasswordFile: '/x' } }));
      fs.chmodSync(file, 0o644);
      assert.equal(configFileExposure(file), null);
      assert.deepEqual(secretKeysIn({ alerts: { smtp: { password: 'p' }, webhookUrl: 'https://h/t' }, database: { embedded: { password: 'old' } } }), [
        'alerts.smtp.password',
        'alerts.webhookUrl',
        'database.embedded.password',
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a file that is not JSON, or missing, by its path', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-config-'));
    fs.writeFileSync(path.join(dir, 'imagesys.json'), '{ nope');
    assert.throws(() => loadConfig({ env: {}, cwd: dir }), /imagesys\.json is not valid JSON/);
    assert.throws(() => loadConfig({ env: { LIS_CONFIG: 'missing.json' }, cwd: dir }), /cannot read config file .*missing\.json: ENOENT/);
    // `null` is valid JSON but no configuration: it must not quietly mean "the defaults" (the embedded server in ./var/pg).
    fs.writeFileSync(path.join(dir, 'imagesys.json'), 'null\n');
    assert.throws(
      () => loadConfig({ env: {}, cwd: dir }),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_CONFIG' && /imagesys\.json is not valid:\n {2}\(top level\): Invalid input: expected object, received null/.test(error.message),
    );
    fs.rmSync(dir, { recursive: true });
  });

  it("refuses a metrics base port whose last country's instance would listen past 65535, naming the key", () => {
    const ports = (downloadd: number) => ({ countries: ['uk', 'de', 'fr'], metrics: { ports: { downloadd, thumbnaild: 9411, pusherd: null, managerd: 0 } } });
    assert.equal(parseConfig(ports(65533), {}).metrics.ports.downloadd, 65533, 'fr gets 65535: the last port there is');
    assert.throws(
      () => parseConfig(ports(65534), {}),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_CONFIG' &&
        /metrics\.ports\.downloadd: fr's instance \(place 2 in countries\) would get port 65536, past 65535: lower the base port/.test(error.message),
    );
    assert.equal(parseConfig({ metrics: { ports: { downloadd: 65535 } } }, {}).metrics.ports.downloadd, 65535, 'no countries: no offset');
  });

  it('refuses a queue.progressTimeoutSeconds not longer than a stage bound on one row, naming both keys (a slow row would be given back and started again for ever)', () => {
    const config = (totalSeconds: number, timeoutSeconds: number, progressTimeoutSeconds: number) => ({
      download: { timeouts: { totalSeconds } },
      thumbnail: { timeoutSeconds },
      queue: { progressTimeoutSeconds },
    });
    assert.equal(parseConfig(config(599, 599, 600), {}).queue.progressTimeoutSeconds, 600);
    assert.throws(
      () => parseConfig(config(900, 30, 600), {}),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_CONFIG' &&
        /queue\.progressTimeoutSeconds: 600 s is not longer than download\.timeouts\.totalSeconds \(900 s\): a row still within it would be taken for wedged, given back and started again for ever; raise it, or lower download\.timeouts\.totalSeconds/.test(
          error.message,
        ),
    );
    assert.throws(
      () => parseConfig(config(60, 30, 30), {}),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_CONFIG' && /queue\.progressTimeoutSeconds: 30 s is not longer than thumbnail\.timeoutSeconds \(30 s\)/.test(error.message),
    );
    // A push counts as progress while its rsyncs run: one silent for push.timeoutSeconds must have ended by then.
    assert.throws(
      () => parseConfig({ ...config(60, 30, 600), push: { timeoutSeconds: 600 } }, {}),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_CONFIG' && /queue\.progressTimeoutSeconds: 600 s is not longer than push\.timeoutSeconds \(600 s\)/.test(error.message),
    );
  });

  it('refuses a metrics.ports name no component reads (a typo would leave its daemon serving no metrics, silently)', () => {
    assert.deepEqual(parseConfig({ metrics: { ports: { downloadd: 9401, thumbnaild: 9411, pusherd: null, managerd: 0 } } }, {}).metrics.ports, {
      downloadd: 9401,
      thumbnaild: 9411,
      pusherd: null,
      managerd: 0,
    });
    for (const name of ['downloadD', 'lis_downloadd', 'imaged']) {
      assert.throws(
        () => parseConfig({ metrics: { ports: { [name]: 9401 } } }, {}),
        (error: Error & { code?: string }) => error.code === 'ERR_CONFIG' && error.message.includes(`metrics.ports.${name}: unknown key`),
        name,
      );
    }
  });

  it('database.stopWaitSeconds and upkeep.progressMinutes: 5 s and 10 min by default, as set, and a bad value refused naming the key', () => {
    const defaults = parseConfig({}, {});
    assert.equal(stopDatabaseWaitMs(defaults), 5000);
    assert.equal(defaults.upkeep.progressMinutes, 10);
    const set = parseConfig({ database: { stopWaitSeconds: 0.5 }, upkeep: { progressMinutes: 1.5 } }, {});
    assert.equal(stopDatabaseWaitMs(set), 500);
    assert.equal(set.upkeep.progressMinutes, 1.5);
    assert.throws(
      () => parseConfig({ database: { stopWaitSeconds: 601 }, upkeep: { progressMinutes: 0 } }, {}),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_CONFIG');
        assert.match(error.message, /database\.stopWaitSeconds: Too big: expected number to be <=600/);
        assert.match(error.message, /upkeep\.progressMinutes: Too small: expected number to be >0/);
        return true;
      },
    );
  });

  it('the database bounds: 10 s and 120 s by default, as set, and a bad value refused naming the key', () => {
    const defaults = parseConfig({}, {});
    assert.deepEqual(serviceQueryBounds(defaults), { connectMs: 10_000, queryMs: 120_000, idleInTransactionMs: 120_000 });
    const set = parseConfig({ database: { connectTimeoutSeconds: 0.5, queryTimeoutSeconds: 3 } }, {});
    assert.deepEqual(serviceQueryBounds(set), { connectMs: 500, queryMs: 3000, idleInTransactionMs: 3000 });
    assert.throws(
      () => parseConfig({ database: { connectTimeoutSeconds: 0, queryTimeoutSeconds: '120' } }, {}),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_CONFIG');
        assert.match(error.message, /database\.connectTimeoutSeconds: Too small: expected number to be >0/);
        assert.match(error.message, /database\.queryTimeoutSeconds: Invalid input: expected number, received string/);
        return true;
      },
    );
    // Past 24.8 days Node's timers fire at once: a bound too long would be no bound, and worse, an instant timeout.
    assert.throws(
      () => parseConfig({ database: { queryTimeoutSeconds: 3_000_000 } }, {}),
      /database\.queryTimeoutSeconds: Too big: expected number to be <=86400/,
    );
  });

  it("`lis config` hides every secret: the database password, a proxy login, a bucket's secret key, the SMTP password and webhooks", () => {
    const config = parseConfig(
      {
        database: { url: 'postgres://imagesys:db-secret@db1/imagesys' },
        download: { proxy: 'http://squid:proxy-secret@proxy.internal:3128' },
        alerts: { smtp: { password: 'smtp-secret' }, webhookUrl: 'https://hooks.example/hook-secret' },
        manager: { webhookUrl: 'https://hooks.example/old-hook-secret' },
        imaged: {
          s3: { photos: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 's3-secret' } },
          origins: { pics: { country: 'uk', datasourceId: 7, sources: [{ type: 'http', baseUrl: 'https://pics:origin-secret@photos.internal/' }] } },
        },
      },
      {},
    );
    const shown = withSecretsHidden(config);
    const text = JSON.stringify(shown);
    for (const secret of ['db-secret', 'proxy-secret', 's3-secret', 'smtp-secret', 'hook-secret', 'origin-secret']) assert.ok(!text.includes(secret), secret);
    assert.equal(shown.download.proxy, 'http://squid:***@proxy.internal:3128');
    assert.deepEqual(shown.imaged.origins.pics.sources, [{ type: 'http', baseUrl: 'https://pics:***@photos.internal/' }], "an origin's login");
    assert.equal(shown.imaged.s3.photos.secretAccessKey, '***');
    assert.equal(shown.imaged.s3.photos.accessKeyId, 'AKIAEXAMPLE', 'a key id names the key; it is no secret');
    assert.equal(config.imaged.s3.photos.secretAccessKey, 's3-secret', 'the configuration in force is left as it is');
  });

  it('accepts country codes in either case, and only configured ones when a list is set', () => {
    assert.equal(parseCountry('UK', { countries: [] }), 'uk');
    assert.throws(() => parseCountry('u1', { countries: [] }), /2-3 letter country code/);
    assert.throws(() => parseCountry('de', { countries: ['uk', 'fr'] }), /not one of the configured countries \(uk, fr\)/);
  });
});

describe('log and progress lines', () => {
  it('writes lines the way the old system did', () => {
    const line = formatLine({
      time: new Date(2026, 5, 19, 9, 11, 26),
      level: 'info',
      scope: 'Download::get_chunk_of_work',
      pid: 6881,
      country: 'uk',
      message: 'Doing chunk of work for UK (size 500)',
    });
    assert.equal(line, 'Jun 19 09:11:26 INFO Download::get_chunk_of_work[6881]:UK Doing chunk of work for UK (size 500)');
    assert.equal(formatLine({ time: new Date(2026, 0, 2, 3, 4, 5), level: 'warn', pid: 1, message: 'x' }), 'Jan 02 03:04:05 WARN ImageSys[1] x');
  });

  it('shows rows done, rate and failures', () => {
    assert.equal(formatProgress(12500, 3, 5000), '12,500 rows done (2,500/s), 3 failed');
  });

  it('clears the progress line before any other line written to its terminal, and ends it once however often stopped', async () => {
    let out = '';
    const terminal = new Writable({
      write(chunk: Buffer, _encoding, done) {
        out += chunk.toString();
        done();
      },
    }) as unknown as NodeJS.WriteStream;
    terminal.isTTY = true;
    const original = Object.getOwnPropertyDescriptor(terminal, 'write');
    const progress = new ProgressLine(terminal, () => ({ done: 5, failed: 1 }), undefined, 10).start();
    await waitFor(() => out.includes('5 rows done'), 10_000, 'the progress line drawn');
    terminal.write('Dec 01 04:56:58 INFO Download::get_chunk_of_work[1]:DE Doing chunk of work\n');
    // Before, the log line followed the status line on the same row: `... 1 failedDec 01 04:56:58 INFO ...`.
    assert.ok(out.includes('1 failed\r\x1b[2KDec 01 04:56:58 INFO'), JSON.stringify(out));
    assert.doesNotMatch(out, /failedDec/);
    progress.stop();
    const ended = out;
    assert.match(ended, /5 rows done \(\d+\/s\), 1 failed\n$/);
    progress.stop();
    assert.equal(out, ended, 'a second stop draws nothing');
    assert.deepEqual(Object.getOwnPropertyDescriptor(terminal, 'write'), original, 'the stream writes as before');
  });
});
