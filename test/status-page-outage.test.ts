import assert from 'node:assert/strict';
import { chromium, type Browser } from 'playwright-core';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const CHROMIUM = '/usr/bin/chromium';

describe('lis web while PostgreSQL is down', () => {
  let t: TestDatabase;
  let web: Spawned | undefined;
  let browser: Browser | undefined;
  let relay: DatabaseProxy | undefined;

  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await browser?.close();
    await relay?.cut();
    web?.child.kill('SIGTERM');
    await web?.exited;
    await t?.drop();
  });

  it('says the database cannot be reached, rather than going blank or staying silently stale', async function () {
    this.timeout(90_000);
    relay = await startDatabaseProxy(t.url);
    web = spawnTs('bin/lis', ['--config', t.writeConfig({ database: { url: relay.url } }), 'web', '--port', '0']);
    await waitFor(() => /status page at (http:\S+)/.test(web!.output()), 20_000, 'lis web');
    const base = /status page at (http:\S+)/.exec(web.output())![1];
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(base);
    await page.waitForFunction(() => /updated/.test(document.getElementById('updated')?.textContent ?? ''));
    assert.equal(await page.isVisible('#trouble'), false, 'no trouble shown while all is well');
    assert.match((await page.textContent('#rows')) ?? '', /nothing yet/, 'an empty database renders');

    await relay.cut();
    const api = await fetch(new URL('api/overview', base));
    assert.equal(api.status, 503);
    assert.match(((await api.json()) as { error: string }).error, /cannot connect to the database at 127\.0\.0\.1:\d+.*ECONNREFUSED|Connection terminated/);

    await page.reload();
    await page.waitForSelector('#trouble', { state: 'visible', timeout: 20_000 });
    assert.match((await page.textContent('#trouble')) ?? '', /database/);
    assert.ok(!(await page.content()).includes(t.url), 'not the database URL');
    await page.fill('#q', 'http://photos.example.com/listing/9/front.jpg');
    await page.click('#lookup button');
    await page.waitForSelector('#lookup-result .bad');
    assert.match((await page.textContent('#lookup-result')) ?? '', /cannot connect to the database/);

    // lis web itself gone: the lookup says so rather than doing nothing.
    web.child.kill('SIGTERM');
    await web.exited;
    await page.click('#lookup button');
    await page.waitForSelector('#lookup-result .bad:has-text("does not answer")', { timeout: 20_000 });
    assert.deepEqual(errors, [], 'no script error, with no rows or with no database');
    await page.close();
  });
});
