import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './free-port.ts';
import { stopChild, waitForPort } from './rsync-daemons.ts';

/**
 * A real sshd on 127.0.0.1 for one test, with a throw-away host key and
 * client key (only that key may log in, as the user running the tests).
 * `clientOptions` are what `push.sshOptions` needs to reach it.
 */
export class TestSshd {
  private child: ChildProcess | null = null;
  private log = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(dir: string): Promise<TestSshd> {
    fs.mkdirSync(dir, { recursive: true });
    // Privilege separation wants this folder; it is missing where sshd never ran (containers).
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const key = (file: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lis-test', '-f', path.join(dir, file)]);
    key('host_key');
    key('client_key');
    fs.copyFileSync(path.join(dir, 'client_key.pub'), path.join(dir, 'authorized_keys'));
    const sshd = new TestSshd(dir, await freePort());
    fs.writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        'ListenAddress 127.0.0.1',
        `HostKey ${path.join(dir, 'host_key')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'StrictModes no',
        `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
        'UsePAM no',
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        '',
      ].join('\n'),
    );
    const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config'), '-p', String(sshd.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (c) => (sshd.log += c));
    child.stderr.on('data', (c) => (sshd.log += c));
    sshd.child = child;
    try {
      await waitForPort(sshd.port, 10_000, child);
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${sshd.log}`, { cause: error });
    }
    return sshd;
  }

  get clientOptions(): string[] {
    return [
      '-i',
      path.join(this.dir, 'client_key'),
      '-p',
      String(this.port),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
    ];
  }

  output(): string {
    return this.log;
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
    this.child = null;
  }
}
