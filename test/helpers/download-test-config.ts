import type { LisConfigInput } from '../../src/config/config-schema.ts';

/** Short limits, and 127.0.0.1 allowed on every port: the test image servers listen on random ports. */
export const TEST_DOWNLOAD: LisConfigInput['download'] = {
  allowAddresses: ['127.0.0.1:*'],
  timeouts: { connectSeconds: 1, firstByteSeconds: 1, totalSeconds: 2 },
  maxBytes: 1_000_000,
  maxRedirects: 3,
  userAgent: 'ImageSys-test/1 (+mailto:ops@example.invalid)',
  stopGraceSeconds: 1,
};
