// A process that logs `count` numbered lines through the daemons' logger, as one country's daemon
// would, for the test of two processes logging and rotating side by side.
import { parseConfig } from '../../src/config/load-config.ts';
import { closeLogger, createLogger } from '../../src/log/create-logger.ts';

const [dir, country, count] = process.argv.slice(2);
const config = parseConfig({ log: { dir, maxSize: '1k' } }, {});
const log = createLogger({ component: 'downloadd', log: config.log, screen: false, country });
for (let i = 0; i < Number(count); i++) {
  log.info(`${country} line ${i} ${'x'.repeat(60)}`, { scope: 'Test::write' });
  if (i % 10 === 0) log.error(`${country} error ${i}`, { scope: 'Test::write' });
  // Let the file streams drain now and then, so that rotation happens while the other process writes too.
  if (i % 25 === 0) await new Promise((resolve) => setImmediate(resolve));
}
await closeLogger(log);
