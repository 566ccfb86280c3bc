import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LisConfig } from '../../src/config/config-schema.ts';
import { binaries, startServer } from '../../src/db/embedded-server.ts';
import { grantServerUserTraverse, serverIds } from '../../src/db/server-user-access.ts';

/**
 * A data folder as versions before the secure defaults made it: initdb with
 * the superuser `settings.user` and the password `settings.password` (by
 * default imagesys/imagesys), no password files; then started.
 */
export async function startLegacyFolder(settings: LisConfig['database']['embedded']): Promise<void> {
  const { initdb } = await binaries();
  const ids = serverIds();
  // The parent open to all (mode 755 by the umask), the data folder to its owner only.
  fs.mkdirSync(path.dirname(path.resolve(settings.dataDir)), { recursive: true });
  fs.mkdirSync(settings.dataDir, { mode: 0o700 });
  grantServerUserTraverse([path.dirname(path.resolve(settings.dataDir))]);
  if (ids.uid !== undefined) fs.chownSync(settings.dataDir, ids.uid, ids.gid!);
  const pwfile = path.join(os.tmpdir(), `lis-initdb-legacy-${process.pid}`);
  fs.writeFileSync(pwfile, `${settings.password}\n`, { mode: 0o644 });
  try {
    await new Promise<void>((resolve, reject) => {
      const args = [
        `--pgdata=${settings.dataDir}`,
        '--auth=scram-sha-256',
        `--username=${settings.user}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--no-instructions',
      ];
      const child = spawn(initdb, args, { ...ids, stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`initdb exit ${code}`))));
    });
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
  await startServer(settings);
}
