import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DAEMON_ENV, nodeFlagsOf } from '../src/services/launch-settings.ts';
import { SERVICES } from '../src/services/service-names.ts';
import { ROOT } from './helpers/processes.ts';

const run = promisify(execFile);

// The settings a daemon needs before its process exists are written in four places; they must agree.
describe('launch settings (src/services/launch-settings.ts)', () => {
  const bin = 'lis_thumbnaild';
  const env = Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`);

  it("bin/lis_thumbnaild's first line sets them for a run by hand", () => {
    const first = fs.readFileSync(path.join(ROOT, 'bin', bin), 'utf8').split('\n')[0];
    assert.equal(first, `#!/usr/bin/env -S ${[...env, 'node', ...nodeFlagsOf(bin)].join(' ')}`);
  });

  it('the systemd unit sets them', () => {
    const unit = fs.readFileSync(path.join(ROOT, 'systemd', 'imagesys-thumbnaild@.service'), 'utf8');
    for (const e of env) assert.match(unit, new RegExp(`^Environment=${e}$`, 'm'));
    assert.match(unit, new RegExp(`^ExecStart=/usr/bin/node ${nodeFlagsOf(bin).join(' ')} /opt/imagesys/bin/${bin} `, 'm'));
    assert.equal(SERVICES['imagesys-thumbnaild'].bin, bin);
  });

  it('a script with that first line, run by hand, gets the environment and the Node flags', async () => {
    const first = fs.readFileSync(path.join(ROOT, 'bin', bin), 'utf8').split('\n')[0];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'launch-'));
    try {
      const script = path.join(dir, 'probe');
      fs.writeFileSync(script, `${first}\nconsole.log(JSON.stringify({ flags: process.execArgv, env: process.env }));\n`, { mode: 0o755 });
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !(k in DAEMON_ENV) && k !== 'NODE_OPTIONS'));
      const { stdout } = await run(script, [], { env: { ...clean, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` } });
      const seen = JSON.parse(stdout) as { flags: string[]; env: Record<string, string> };
      assert.deepEqual(seen.flags, [...nodeFlagsOf(bin)]);
      for (const [k, v] of Object.entries(DAEMON_ENV)) assert.equal(seen.env[k], v);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
