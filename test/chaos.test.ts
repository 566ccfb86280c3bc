import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runChaos } from '../bench/lib/chaos.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { stopEmbedded } from '../src/db/embedded-server.ts';
import { freePort } from './helpers/free-port.ts';
import { killServerAtExit } from './helpers/reap-children.ts';

describe('chaos: the whole system keeps its promises while daemons are killed, a frontend goes away, a store fills up and PostgreSQL restarts', () => {
  it('every good URL live everywhere, every bad one failed with its reason, nothing done twice, nothing left over', async function () {
    this.timeout(420_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-chaos-'));
    // A PostgreSQL server of its own, which the run restarts: the other test files, running side by side with this
    // one, keep theirs. (Outside `dir`, which the run empties first.)
    const server = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-chaos-pg-'));
    const embedded = { dataDir: path.join(server, 'pg'), port: await freePort() };
    killServerAtExit(embedded.dataDir);
    try {
      const result = await runChaos({
        embedded,
        // Enough work to outlast the outages (the last, n2's, ends at 20 s; the rows it lacks wait for it, and
        // the kills go on while they do), and every bad kind 16 times or more. A kill every 2.5 s gives 8-10 kills
        // a run; every 2 s, the rows of the killed (released after STALE_SECONDS) kept the drain going under
        // load. Before: 1000 URLs, a kill every 3 s, 96 s in CI.
        urls: 500,
        countries: ['uk', 'fr'],
        datasources: [11, 12, 13],
        limitSeconds: 300,
        killEverySeconds: 2.5,
        // The frontend outage and the full store must disable no datasource (bad_datasources runs, sensitive).
        frontendDown: { atSeconds: 8, forSeconds: 12 },
        datasourceCheck: true,
        storeFull: { atSeconds: 4, forSeconds: 8 },
        restartPostgresAtSeconds: 15,
        dir,
        print: () => {},
      });
      const report = [
        ...Object.entries(result.figures).map(([k, v]) => `${k}: ${v}`),
        ...result.checks.map((c) => `${c.ok ? 'PASS' : 'FAIL'} ${c.name}: ${c.detail}`),
      ].join('\n');
      assert.ok(Number(result.figures.kills) >= 5, `daemons were killed:\n${report}`);
      for (const check of result.checks) assert.ok(check.ok, `${check.name}: ${check.detail}\n\n${report}`);
    } finally {
      await stopEmbedded(parseConfig({ database: { embedded } }, {}).database.embedded).catch(() => {});
      fs.rmSync(server, { recursive: true, force: true });
      // The store's tmpfs, should the run have stopped before unmounting it.
      try {
        execFileSync('umount', ['-l', path.join(dir, 'hosta', 'thumbnails')], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
