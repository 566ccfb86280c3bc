// The chaos run from the command line, bigger than the test's:
//   node --import tsx bench/chaos.ts [--urls 5000] [--limit 900] [--kill-every 3]
import { benchOptions, flag } from './lib/bench-args.ts';
import { runChaos } from './lib/chaos.ts';

benchOptions({ urls: 'N', limit: 'SECONDS', 'kill-every': 'SECONDS' });

const result = await runChaos({
  urls: flag('urls', 5000),
  countries: ['uk', 'fr', 'de'],
  datasources: [11, 12, 13, 14],
  limitSeconds: flag('limit', 900),
  killEverySeconds: flag('kill-every', 3),
  frontendDown: { atSeconds: 15, forSeconds: 20 },
  restartPostgresAtSeconds: 30,
  dir: './var/chaos',
  print: (line) => console.log(line),
});
console.log('\nfigures:');
for (const [k, v] of Object.entries(result.figures)) console.log(`  ${k.padEnd(30)} ${v}`);
console.log('\nchecks:');
for (const c of result.checks) console.log(`  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
process.exit(result.checks.every((c) => c.ok) ? 0 : 1);
