import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './free-port.ts';

/** Resolves once something accepts connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 10_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (child && child.exitCode !== null) throw new Error(`the server for port ${port} exited (${child.exitCode}) before listening`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function stopChild(child: ChildProcess | null, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((resolve) => child.once('close', resolve));
  child.kill(signal);
  await closed;
}

/**
 * A real rsync daemon on 127.0.0.1 with one writable module, `thumbs`, whose
 * folder is `moduleDir`; as root here and in CI, so no chroot and root's ids.
 * stop() and start() again keep the port and the module, as a frontend
 * restarting would.
 */
export class RsyncDaemon {
  readonly moduleDir: string;
  private child: ChildProcess | null = null;
  private log = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.moduleDir = path.join(dir, 'module');
  }

  static async start(dir: string): Promise<RsyncDaemon> {
    fs.mkdirSync(path.join(dir, 'module'), { recursive: true });
    const daemon = new RsyncDaemon(dir, await freePort());
    fs.writeFileSync(
      path.join(dir, 'rsyncd.conf'),
      [
        `pid file = ${path.join(dir, 'rsyncd.pid')}`,
        'use chroot = no',
        'uid = 0',
        'gid = 0',
        '[thumbs]',
        `  path = ${daemon.moduleDir}`,
        '  read only = no',
        '',
      ].join('\n'),
    );
    await daemon.start();
    return daemon;
  }

  /** rsync://127.0.0.1:PORT/thumbs[/sub] */
  url(sub = ''): string {
    return `rsync://127.0.0.1:${this.port}/thumbs${sub ? `/${sub}` : ''}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    fs.rmSync(path.join(this.dir, 'rsyncd.pid'), { force: true });
    const child = spawn(
      'rsync',
      [
        '--daemon',
        '--no-detach',
        '--address=127.0.0.1',
        `--port=${this.port}`,
        `--config=${path.join(this.dir, 'rsyncd.conf')}`,
        `--log-file=${path.join(this.dir, 'rsyncd.log')}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.on('data', (c) => (this.log += c));
    child.stderr.on('data', (c) => (this.log += c));
    this.child = child;
    try {
      await waitForPort(this.port, 10_000, child);
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${this.log}`, { cause: error });
    }
  }

  /**
   * SIGKILL: on SIGTERM or SIGINT rsync sleeps 400 ms before it exits (its signal handler gives an ssh child
   * time to restore the tty), which every test's clean-up paid for each daemon. The listener only accepts and
   * forks, and a transfer's own process is not stopped by either signal, so a frontend going away is as abrupt.
   */
  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGKILL');
    this.child = null;
  }
}

export { stopChild };
