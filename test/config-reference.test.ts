import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG_MEANINGS } from '../src/config/config-meanings.ts';
import { configReferenceRows, describeType, renderConfigReference, withConfigReference } from '../src/config/config-reference.ts';
import { ROOT } from './helpers/processes.ts';

describe('the configuration reference in README', () => {
  it('is the one generated from the zod schema (run `npm run docs:config` after changing the schema)', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    assert.equal(withConfigReference(readme), readme);
  });

  it('lists every key, and fails for a key without a meaning or a meaning without a key', () => {
    const keys = configReferenceRows().map((r) => r.key);
    for (const key of ['host', 'database.embedded.port', 'services.startTimeoutSeconds', 'metrics.ports', 'thumbnail.classes.tinyWidth'])
      assert.ok(keys.includes(key), key);
    const { ['services.startTimeoutSeconds']: _dropped, ...lacking } = CONFIG_MEANINGS;
    assert.throws(() => configReferenceRows(lacking), { code: 'ERR_CONFIG_DOCS', message: /keys without a meaning .*: services\.startTimeoutSeconds/ });
    assert.throws(() => configReferenceRows({ ...CONFIG_MEANINGS, 'queue.gone': 'old' }), { message: /no longer has: queue\.gone/ });
    assert.match(renderConfigReference(), /^\| `queue\.chunkSize` \| `500` \| integer 1-10000 \| rows per claim \|$/m);
  });

  it('says what a key accepts in a few words', () => {
    assert.equal(describeType({ type: 'integer', exclusiveMinimum: 0, maximum: 100 }), 'integer 1-100');
    assert.equal(describeType({ type: 'number', minimum: 0, maximum: 1 }), 'number 0-1');
    assert.equal(describeType({ type: 'number', exclusiveMinimum: 0 }), 'number >0');
    assert.equal(describeType({ anyOf: [{ type: 'string' }, { type: 'null' }] }), 'string or null');
    assert.equal(describeType({ enum: ['a', 'b'] }), '`a`, `b`');
    assert.equal(describeType({ type: 'array', items: { type: 'string' } }), 'list of string');
  });
});
