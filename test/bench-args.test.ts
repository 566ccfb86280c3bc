import assert from 'node:assert/strict';
import { spawnTs } from './helpers/processes.ts';

/**
 * The benches' command lines (bench/lib/bench-args.ts). No bench runs here, and no speed is asserted: each case stops
 * before any work. Before, an option a bench did not take was passed over and the bench ran on its defaults.
 */
describe('a bench refuses an option it does not take, rather than run on its defaults', () => {
  const run = async (bench: string, ...args: string[]) => {
    const child = spawnTs(`bench/${bench}.ts`, args);
    const { code } = await child.exited;
    return { code, out: child.output() };
  };

  it('--help lists the options; a misspelt option, a missing value, a number that is not one or a stray word: exit 2, saying which', async () => {
    const help = await run('queue-drain', '--help');
    assert.equal(help.code, 0, help.out);
    assert.match(help.out, /^usage: bench\/queue-drain\.ts \[--rows N\] .*\[--prototype\] .*\[--config FILE\]$/m);
    const cases: Array<[string, string[], RegExp]> = [
      ['queue-drain', ['--row', '100000'], /^bench: Unknown option '--row'$/m],
      ['imaged', ['--preset'], /^bench: Option '--preset <value>' argument missing$/m],
      ['startup', ['--runs', '2x'], /^bench: --runs takes a number, not "2x"$/m],
      ['startup', ['--against', 'test'], /^bench: --against test: no built executables there \(dist\/bin\/\): run npm run build in that checkout first$/m],
      ['enqueue', ['stray'], /^bench: Unexpected argument 'stray'/m],
    ];
    for (const [bench, args, said] of cases) {
      const refused = await run(bench, ...args);
      assert.equal(refused.code, 2, `${bench} ${args.join(' ')}: ${refused.out}`);
      assert.match(refused.out, said);
      assert.match(refused.out, new RegExp(`^usage: bench/${bench}\\.ts `, 'm'));
    }
  });
});
