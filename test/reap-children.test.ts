import assert from 'node:assert/strict';
import { fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { liveChildren } from './helpers/reap-children.ts';
import { ROOT, waitFor } from './helpers/processes.ts';

/** Whether the process runs (a zombie, killed and not yet reaped by anyone, does not). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The stand-in worker, and the pids of the two children it started. */
async function startParent(args: string[] = []) {
  const parent = fork(path.join(ROOT, 'test/fixtures/reaped-parent.ts'), args, { execArgv: ['--import', 'tsx'], stdio: 'ignore' });
  const [message] = (await once(parent, 'message')) as [{ pids: number[]; serverPids: number[] }];
  return { parent, pids: message.pids, serverPids: message.serverPids };
}

describe('a test process stopped from outside leaves no child of its own running', () => {
  const started: number[] = [];
  afterEach(() => {
    // Whatever the outcome, nothing of these tests is left behind.
    for (const pid of started.splice(0)) if (running(pid)) process.kill(pid, 'SIGKILL');
  });

  for (const [how, stop] of [
    ['given SIGTERM (a CI timeout, `kill` of the run)', (parent: ReturnType<typeof fork>) => parent.kill('SIGTERM')],
    ["when its runner's channel closes (the runner killed)", (parent: ReturnType<typeof fork>) => parent.disconnect()],
  ] as const) {
    it(how, async function () {
      this.timeout(30_000);
      const { parent, pids } = await startParent();
      started.push(parent.pid!, ...pids);
      assert.ok(pids.every(running), 'both children run before their parent stops');
      const exited = once(parent, 'exit');
      stop(parent);
      await exited;
      await waitFor(() => !pids.some(running), 10_000, 'the children to be killed');
    });
  }

  it('a PostgreSQL server a test started for itself (detached, and frozen by the test: every process of it stopped) is killed too, all of it', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-reaped-'));
    try {
      const { parent, pids, serverPids } = await startParent(['--server', dir]);
      started.push(parent.pid!, ...pids, ...serverPids);
      assert.ok(serverPids.length > 1 && serverPids.every(running), `the server runs before its test process stops: ${serverPids.join(' ')}`);
      const exited = once(parent, 'exit');
      parent.kill('SIGTERM');
      await exited;
      await waitFor(() => ![...serverPids, ...pids].some(running), 10_000, 'every process of the server and the children to be killed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forgets a child once it has exited, and holds one that runs', async () => {
    const quick = spawn('true');
    const slow = spawn('sleep', ['600']);
    started.push(slow.pid!);
    assert.ok(liveChildren().has(quick) && liveChildren().has(slow));
    await once(quick, 'exit');
    assert.equal(liveChildren().has(quick), false);
    assert.equal(liveChildren().has(slow), true);
    slow.kill('SIGKILL');
    await once(slow, 'exit');
    assert.equal(liveChildren().has(slow), false);
  });
});
