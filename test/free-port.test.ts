import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { freeConsecutivePorts, freePort, releasePort, reservablePool, reservationFile, reservePorts, type PortPool } from './helpers/free-port.ts';
import { childImport } from './helpers/fixture-bundles.ts';
import { ROOT } from './helpers/processes.ts';
import { within as withinDeadline } from './helpers/within-deadline.ts';

const DEADLINE_MS = 20_000;

/** `promise`, or a failure naming `what` after DEADLINE_MS. */
const within = <T>(promise: Promise<T>, what: string): Promise<T> => withinDeadline(promise, what, DEADLINE_MS);

/**
 * A node child that reserves `count` ports at once (all asked for together) when told "go" on stdin, prints
 * them as a JSON line, and exits normally when its stdin ends; it says "ready" first.
 */
function reservingChild(count: number): { child: ChildProcess; line: () => Promise<string> } {
  const portsModule = childImport('test/helpers/free-port.ts');
  const script = `import { reservePorts } from ${JSON.stringify(portsModule.path)};
    process.stdout.write('ready\\n');
    process.stdin.once('data', async () => {
      const ports = await Promise.all(Array.from({ length: ${count} }, () => reservePorts(1)));
      process.stdout.write(JSON.stringify(ports) + '\\n');
    });
    process.stdin.resume();`;
  const child = spawn(process.execPath, [...portsModule.loader, '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else lines.push(line);
  });
  const line = () => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise<string>((resolve) => waiting.push(resolve)));
  return { child, line };
}

async function ended(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const [code, signal] = (await within(once(child, 'exit'), 'child exit')) as [number | null, NodeJS.Signals | null];
  return { code, signal };
}

const holderPid = (port: number): number | null => {
  try {
    return Number(fs.readFileSync(reservationFile(port), 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
};

const only = (port: number): PortPool => ({ low: port, high: port });

describe('free ports for test servers: reserved across processes, out of the kernel’s ephemeral range', function () {
  this.timeout(60_000);
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await ended(child);
    }
  });

  it('takes its pool below the ephemeral range (20000-29999 when that starts at 32768), else above it, else none', () => {
    assert.deepEqual(reservablePool([32768, 60999]), { low: 20000, high: 29999 });
    assert.deepEqual(reservablePool([25000, 60999]), { low: 20000, high: 24999 });
    assert.deepEqual(reservablePool([20500, 50000]), { low: 50001, high: 60000 });
    assert.deepEqual(reservablePool([1024, 64000]), { low: 64001, high: 65535 });
    assert.deepEqual(reservablePool([1024, 64600]), null);
    assert.deepEqual(reservablePool([1024, 65535]), null);
  });

  it('two processes asking for 100 ports each at the same moment are never given the same port, and give them back on exit', async () => {
    const kids = [reservingChild(100), reservingChild(100)];
    children.push(...kids.map((k) => k.child));
    for (const kid of kids) assert.equal(await within(kid.line(), 'ready'), 'ready');
    for (const kid of kids) kid.child.stdin!.write('go\n');
    const given = await Promise.all(kids.map(async (kid) => JSON.parse(await within(kid.line(), 'ports')) as number[]));
    const all = given.flat();
    assert.equal(all.length, 200);
    assert.equal(new Set(all).size, 200, 'no port given twice');
    const range = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [number, number];
    const pool = reservablePool(range)!;
    for (const port of all) assert.ok(port >= pool.low && port <= pool.high && (port < range[0] || port > range[1]), `${port} out of the kernel's range`);
    for (const [i, kid] of kids.entries()) for (const port of given[i]) assert.equal(holderPid(port), kid.child.pid, `${port}'s reservation names its process`);

    // A live holder's port is not given to anyone else.
    await assert.rejects(reservePorts(1, only(given[0][0])), { code: 'ERR_NO_FREE_PORT' });

    for (const kid of kids) kid.child.stdin!.end();
    for (const kid of kids) assert.deepEqual(await ended(kid.child), { code: 0, signal: null });
    for (const [i, kid] of kids.entries()) for (const port of given[i]) assert.notEqual(holderPid(port), kid.child.pid, `${port} given back on exit`);
  });

  it('a port reserved by a process that died without giving it back (SIGKILL) is taken over', async () => {
    const kid = reservingChild(1);
    children.push(kid.child);
    assert.equal(await within(kid.line(), 'ready'), 'ready');
    kid.child.stdin!.write('go\n');
    const [port] = JSON.parse(await within(kid.line(), 'port')) as number[];
    kid.child.kill('SIGKILL');
    assert.equal((await ended(kid.child)).signal, 'SIGKILL');
    assert.equal(holderPid(port), kid.child.pid, 'its reservation was left behind');
    assert.equal(await reservePorts(1, only(port)), port);
    assert.equal(holderPid(port), process.pid);
    releasePort(port);
  });

  it('a reservation whose pid now belongs to another process (its start time differs) is stale too', async () => {
    const port = await freePort();
    releasePort(port);
    // Our pid, as written by a process started at tick 1: not us, so gone.
    const stale = `${process.pid}\na test server's port\nprocess-start=1 token=0123456789ab\n`;
    fs.writeFileSync(reservationFile(port), stale);
    assert.equal(await reservePorts(1, only(port)), port);
    assert.notEqual(fs.readFileSync(reservationFile(port), 'utf8'), stale);
    releasePort(port);
    assert.equal(holderPid(port), null, 'given back');
  });

  it('never gives a port that a listener holds, and leaves no reservation for it', async () => {
    const listener = net.createServer();
    listener.listen(0, '127.0.0.1');
    await within(once(listener, 'listening'), 'listening');
    const { port } = listener.address() as net.AddressInfo;
    try {
      await assert.rejects(reservePorts(1, only(port)), { code: 'ERR_NO_FREE_PORT' });
      assert.equal(holderPid(port), null);
    } finally {
      await new Promise((resolve) => listener.close(resolve));
    }
  });

  it('gives consecutive ports, bindable, and takes them back early when asked', async () => {
    const base = await freeConsecutivePorts(3);
    for (let p = base; p < base + 3; p++) {
      assert.equal(holderPid(p), process.pid);
      const server = net.createServer().listen(p, '127.0.0.1');
      await within(once(server, 'listening'), `listening on ${p}`);
      await new Promise((resolve) => server.close(resolve));
    }
    releasePort(base, 3);
    for (let p = base; p < base + 3; p++) assert.notEqual(holderPid(p), process.pid, `${p} given back`);
  });

  it('with no pool out of the kernel’s reach, reserves the ports the kernel picks all the same', async () => {
    const port = await reservePorts(1, null);
    assert.equal(holderPid(port), process.pid);
    releasePort(port);
  });
});
