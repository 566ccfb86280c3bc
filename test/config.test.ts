import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, parseConfig } from '../src/config/load-config.ts';
import { parseCountry } from '../src/config/country.ts';
import { serviceQueryBounds } from '../src/db/connect.ts';
import { formatLine } from '../src/log/line-format.ts';
import { ProgressLine, formatProgress } from '../src/daemon/progress-line.ts';
import { waitFor } from './helpers/processes.ts';
import { stopDatabaseWaitMs } from '../src/daemon/run-daemon.ts';

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

  it('names every bad key and says what it expects', () => {
    assert.throws(
      () => parseConfig({ queue: { chunkSize: 'big', backoff: { jitter: 2 } }, log: { level: 'loud' }, hots: 'x' }, {}),
      (error: Error) => {
        assert.match(error.message, /queue\.chunkSize: Invalid input: expected number, received string/);
        assert.match(error.message, /queue\.backoff\.jitter: Too big/);
        assert.match(error.message, /log\.level: Invalid option: expected one of "error"\|"warn"\|"info"\|"debug"/);
        assert.match(error.message, /\(top level\): Unrecognized key: "hots"/);
        return true;
      },
    );
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
    await waitFor(() => out.includes('5 rows done'), 2000, 'the progress line drawn');
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
