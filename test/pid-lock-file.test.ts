import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { tempWriterPid } from '../src/util/exclusive-file.ts';
import { acquirePidLock, readPidFile } from '../src/util/pid-lock-file.ts';
import { childImport } from './helpers/fixture-bundles.ts';
import { ROOT } from './helpers/processes.ts';
import { within as withinDeadline } from './helpers/within-deadline.ts';

const DEADLINE_MS = 20_000;
const RACERS = 8;
const ROUNDS = 20;

/** `promise`, or a failure naming `what` after DEADLINE_MS. */
const within = <T>(promise: Promise<T>, what: string): Promise<T> => withinDeadline(promise, what, DEADLINE_MS);

type Reply = { ready: number } | { won: true } | { held: number } | { error: string } | { released: true };

/**
 * A node child that takes the lock file it is told to (acquirePidLock, as lis_cron_frontend does) and holds it
 * until told to release it. Orders and replies are JSON lines on its stdin and stdout; it exits when its stdin
 * ends (without releasing what it holds, as a run that crashed).
 */
class Racer {
  readonly child: ChildProcess;
  readonly pid: number;
  private readonly lines: string[] = [];
  private readonly waiting: Array<(line: string) => void> = [];

  constructor() {
    const lockModule = childImport('src/util/pid-lock-file.ts');
    const script = `import readline from 'node:readline';
      import { acquirePidLock, LockHeldError } from ${JSON.stringify(lockModule.path)};
      let release = null;
      const say = (reply) => process.stdout.write(JSON.stringify(reply) + '\\n');
      readline.createInterface({ input: process.stdin }).on('line', (line) => {
        const order = JSON.parse(line);
        if (order.op === 'take') {
          try {
            release = acquirePidLock(order.file, 'racer ' + process.pid);
            say({ won: true });
          } catch (error) {
            say(error instanceof LockHeldError ? { held: error.holderPid } : { error: error.code ?? error.message });
          }
        } else {
          release?.();
          release = null;
          say({ released: true });
        }
      });
      say({ ready: process.pid });`;
    this.child = spawn(process.execPath, [...lockModule.loader, '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    this.pid = this.child.pid!;
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const next = this.waiting.shift();
      if (next) next(line);
      else this.lines.push(line);
    });
  }

  async reply(what: string): Promise<Reply> {
    const line =
      this.lines.length > 0
        ? this.lines.shift()!
        : await within(new Promise<string>((resolve) => this.waiting.push(resolve)), `${what} from racer ${this.pid}`);
    return JSON.parse(line) as Reply;
  }

  /** Sends the order at once (the write is not awaited, so that several racers get theirs together), then awaits the reply. */
  ask(order: { op: 'take'; file: string } | { op: 'release' }): Promise<Reply> {
    this.child.stdin!.write(`${JSON.stringify(order)}\n`);
    return this.reply(order.op);
  }

  async end(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin!.end();
    try {
      await within(exited, `exit of racer ${this.pid}`);
    } catch (error) {
      this.child.kill('SIGKILL');
      await exited;
      throw error;
    }
  }
}

/** Once every one of `racers` said it is ready. */
async function ready(racers: Racer[]): Promise<void> {
  for (const racer of racers) assert.deepEqual(await racer.reply('ready'), { ready: racer.pid });
}

/** A pid that was a process of ours and is gone (reaped): what a lock left by a run that died names. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await within(once(child, 'exit'), 'a short-lived process’s exit');
  return child.pid!;
}

/** What a racer's lock file held after the racer was killed (SIGKILL) holding it: a stale lock as the product writes it. */
async function killedHoldersLock(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pid-lock-killed-'));
  const racer = new Racer();
  try {
    await ready([racer]);
    const file = path.join(dir, 'killed.lock');
    assert.deepEqual(await racer.ask({ op: 'take', file }), { won: true });
    const exited = once(racer.child, 'exit');
    racer.child.kill('SIGKILL');
    await within(exited, 'the killed holder’s exit');
    return fs.readFileSync(file, 'utf8');
  } finally {
    if (racer.child.exitCode === null && racer.child.signalCode === null) racer.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('pid lock files: one holder at a time across processes, a dead holder’s lock taken over at once', function () {
  this.timeout(120_000);
  let racers: Racer[] = [];
  let dir = '';
  let killed = '';

  before(async () => {
    // Kept as they start, so that the after hook ends them even if one never gets ready.
    racers = Array.from({ length: RACERS }, () => new Racer());
    await ready(racers);
    killed = await killedHoldersLock();
  });
  after(async () => {
    await Promise.all(racers.map((racer) => racer.end()));
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pid-lock-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** All `racers` told to take `file` at once: their replies, in their order. */
  const race = (file: string, among = racers) => Promise.all(among.map((racer) => racer.ask({ op: 'take', file })));

  /** Exactly one racer got `file`, the file names it, every other was told it is held by the winner; then released, nothing left. */
  async function exactlyOneWon(file: string, replies: Reply[], round: string): Promise<void> {
    const winners = racers.filter((_, i) => 'won' in replies[i]);
    assert.equal(winners.length, 1, `${round}: exactly one winner, got ${JSON.stringify(replies.map((reply, i) => ({ pid: racers[i].pid, ...reply })))}`);
    const [winner] = winners;
    for (const [i, reply] of replies.entries()) if (racers[i] !== winner) assert.deepEqual(reply, { held: winner.pid }, `${round}: racer ${racers[i].pid}`);
    assert.equal(readPidFile(file)?.pid, winner.pid, `${round}: the file names the winner`);
    assert.equal(readPidFile(file)?.note, `racer ${winner.pid}`, `${round}: and its note`);
    assert.deepEqual(await winner.ask({ op: 'release' }), { released: true });
    assert.deepEqual(fs.readdirSync(dir), [], `${round}: released, and nothing left beside it (no temp file, no takeover guard)`);
  }

  it(`${RACERS} processes racing for a free lock: exactly one gets it, ${ROUNDS} rounds over`, async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    for (let round = 1; round <= ROUNDS; round++) await exactlyOneWon(file, await race(file), `round ${round}`);
  });

  it(`${RACERS} processes racing for a lock whose holder is gone: exactly one takes it over, ${ROUNDS} rounds over`, async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    const dead = await deadPid();
    // Left by a run killed outright, as the product writes it (pid, note, start time and token), and by hand as operators and tests write it.
    const stale = [killed, `${dead}\nlis_cron_frontend uk since earlier\n`];
    for (let round = 1; round <= ROUNDS; round++) {
      fs.writeFileSync(file, stale[round % stale.length]);
      await exactlyOneWon(file, await race(file), `round ${round}`);
    }
  });

  it('a live holder’s lock is never taken, neither one a racer holds nor one written by hand naming a live pid', async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    const [holder, ...others] = racers;
    assert.deepEqual(await holder.ask({ op: 'take', file }), { won: true });
    const held = fs.readFileSync(file, 'utf8');
    for (let round = 1; round <= ROUNDS; round++) {
      assert.deepEqual(
        await race(file, others),
        others.map(() => ({ held: holder.pid })),
        `round ${round}`,
      );
      assert.equal(fs.readFileSync(file, 'utf8'), held, `round ${round}: unchanged`);
    }
    assert.deepEqual(await holder.ask({ op: 'release' }), { released: true });
    assert.equal(fs.existsSync(file), false, 'released');

    const byHand = `${process.pid}\nlis_cron_frontend uk since earlier\n`;
    fs.writeFileSync(file, byHand);
    for (let round = 1; round <= ROUNDS; round++) {
      assert.deepEqual(
        await race(file),
        racers.map(() => ({ held: process.pid })),
        `by hand, round ${round}`,
      );
      assert.equal(fs.readFileSync(file, 'utf8'), byHand, `by hand, round ${round}: unchanged`);
    }
  });

  it('a lock naming a live pid that now belongs to another process (its start time differs) is stale: taken over by one', async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    for (let round = 1; round <= ROUNDS; round++) {
      fs.writeFileSync(file, `${process.pid}\nlis_cron_frontend uk since earlier\nprocess-start=1 token=0123456789abcdef\n`);
      await exactlyOneWon(file, await race(file), `round ${round}`);
    }
  });

  it('an empty or garbage lock file names no holder, and is stale (ours are never seen so): taken over by one', async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    const garbage = ['', '\n', 'not a pid\nlis_cron_frontend uk\n', '12abc\n'];
    for (let round = 1; round <= ROUNDS; round++) {
      fs.writeFileSync(file, garbage[round % garbage.length]);
      await exactlyOneWon(file, await race(file), `round ${round} (${JSON.stringify(garbage[round % garbage.length])})`);
    }
  });

  it('a takeover guard left by a process killed mid-takeover does not block the lock; one of a live process does, naming it', async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    const guard = `${file}.takeover`;
    const dead = `${await deadPid()}\nlis_cron_frontend uk since earlier\n`;
    // Killed before it replaced the lock (the lock still the stale one), twice in a row (a guard of the guard left too), or after (the lock its own).
    const left: Array<Record<string, string>> = [
      { [file]: dead, [guard]: killed },
      { [file]: dead, [guard]: killed, [`${guard}.takeover`]: dead },
      { [file]: killed, [guard]: killed },
      { [guard]: killed },
    ];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, text] of Object.entries(left[round % left.length])) fs.writeFileSync(name, text);
      await exactlyOneWon(
        file,
        await race(file),
        `round ${round}: ${Object.keys(left[round % left.length])
          .map((name) => path.basename(name))
          .join(', ')} left`,
      );
    }

    // A live process taking it over: it will hold the lock, and is named as its holder.
    fs.writeFileSync(file, dead);
    fs.writeFileSync(guard, `${process.pid}\nlis_cron_frontend uk since now\n`);
    assert.deepEqual(
      await race(file),
      racers.map(() => ({ held: process.pid })),
    );
    assert.equal(fs.readFileSync(file, 'utf8'), dead, 'not replaced under a live guard');
  });

  it('releases the lock only while it still holds what it wrote, and tells pid, note and start time apart', async () => {
    const file = path.join(dir, 'cron_frontend.uk.lock');
    const [holder] = racers;
    assert.deepEqual(await holder.ask({ op: 'take', file }), { won: true });
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    assert.equal(lines[0], String(holder.pid), 'the first line is the pid, as operators and tests read it');
    assert.equal(lines[1], `racer ${holder.pid}`);
    assert.match(lines[2], /^process-start=\d+ token=[0-9a-f]+$/);
    assert.deepEqual(readPidFile(file), { pid: holder.pid, note: `racer ${holder.pid}`, start: lines[2].split(/[= ]/)[1] });

    // Replaced meanwhile (by hand): not ours any more, so not removed.
    const other = `${process.pid}\nsomeone else\n`;
    fs.writeFileSync(file, other);
    assert.deepEqual(await holder.ask({ op: 'release' }), { released: true });
    assert.equal(fs.readFileSync(file, 'utf8'), other);
  });
  it('a temp file left by a writer killed before putting it in place is removed by the next write, once it is old and its writer gone', async () => {
    const file = path.join(dir, 'swept.lock');
    const gone = await deadPid();
    const aMinuteAgo = new Date(Date.now() - 61_000);
    const left = (pid: number, random: string, old: boolean): string => {
      const temp = path.join(dir, `.swept.lock.${pid}-${random}.tmp`);
      fs.writeFileSync(temp, `${pid}\n`);
      if (old) fs.utimesSync(temp, aMinuteAgo, aMinuteAgo);
      assert.equal(tempWriterPid(file, path.basename(temp)), pid, 'named as writeAside names its temp files');
      return path.basename(temp);
    };
    const killedWriters = left(gone, '0badf00d', true);
    const justNow = left(gone, '1badf00d', false); // maybe a writer in another pid namespace, about to put it in place
    const liveWriters = left(process.pid, '2badf00d', true);
    const another = '.swept.lock.other.tmp';
    fs.writeFileSync(path.join(dir, another), '');
    const release = acquirePidLock(file, 'sweeper');
    try {
      assert.deepEqual(fs.readdirSync(dir).sort(), [another, justNow, liveWriters, 'swept.lock'].sort());
      assert.equal(fs.existsSync(path.join(dir, killedWriters)), false);
    } finally {
      release();
    }
    assert.equal(tempWriterPid(file, '.other.lock.12-0badf00d.tmp'), null, "another file's temp files are not this one's");
  });
});
