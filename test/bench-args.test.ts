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

  // One case a test: each spawns a bench through tsx (2-3 s of CPU), and six in one test outran its timeout on a
  // machine with five test files at once on two cores.
  it('--help lists the options', async () => {
    const help = await run('queue-drain', '--help');
    assert.equal(help.code, 0, help.out);
    assert.match(help.out, /^usage: bench\/queue-drain\.ts \[--rows N\] .*\[--prototype\] .*\[--config FILE\]$/m);
  });

  const cases: Array<[string, string, string[], RegExp]> = [
    ['a misspelt option', 'queue-drain', ['--row', '100000'], /^bench: Unknown option '--row'$/m],
    ['a missing value', 'imaged', ['--preset'], /^bench: Option '--preset <value>' argument missing$/m],
    ['a number that is not one', 'startup', ['--runs', '2x'], /^bench: --runs takes a number, not "2x"$/m],
    [
      'a folder with no built executables',
      'startup',
      ['--against', 'test'],
      /^bench: --against test: no built executables there \(dist\/bin\/\): run npm run build in that checkout first$/m,
    ],
    ['a stray word', 'enqueue', ['stray'], /^bench: Unexpected argument 'stray'/m],
  ];
  for (const [what, bench, args, said] of cases)
    it(`${what} (${bench} ${args.join(' ')}): exit 2, saying which, with the usage`, async () => {
      const refused = await run(bench, ...args);
      assert.equal(refused.code, 2, `${bench} ${args.join(' ')}: ${refused.out}`);
      assert.match(refused.out, said);
      assert.match(refused.out, new RegExp(`^usage: bench/${bench}\\.ts `, 'm'));
    });
});
