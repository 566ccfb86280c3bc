/**
 * Queueing URLs is a queue operation: src/queue/enqueue-rows.ts. This name
 * stays only for test/imaged.test.ts, which imports it from here; once that
 * import names src/queue, this file goes.
 */
export { enqueueRows as upsertUrls } from '../queue/enqueue-rows.ts';
