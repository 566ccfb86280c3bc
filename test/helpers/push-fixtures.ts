import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import sharp from 'sharp';
import type { LisConfig } from '../../src/config/config-schema.ts';
import type { Db } from '../../src/db/connect.ts';
import type { ImageData } from '../../src/store/image-data.ts';
import { thumbnailRelativePath, thumbnailStorePath } from '../../src/store/store-layout.ts';

export const PRESETS = { small: 64, medium: 160, large: 320 } as const;

/** A small real JPEG, different for each seed. */
export async function jpegBytes(width: number, seed: number): Promise<Buffer> {
  const height = Math.round(width * 0.75);
  const noise = crypto.createHash('sha256').update(String(seed)).digest();
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (noise[i % noise.length] + i * 7 + seed) & 0xff;
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

/**
 * Rows in stage push as lis_thumbnaild leaves them: JPEGs for each preset in
 * the thumbnail store and image_data naming them, store_host this host.
 * Returns the rows' relative file paths.
 */
export async function insertPushRows(
  db: Db,
  config: LisConfig,
  country: string,
  count: number,
  options: { prefix?: string; stage?: 'push' | 'live' } = {},
): Promise<string[]> {
  const prefix = options.prefix ?? `http://img.example.com/${country}/`;
  const { rows } = await sql<{ id: string; image_hash: string }>`
    INSERT INTO live_images (country, datasource_id, image_url, stage, state, store_host)
    SELECT ${country}, 1, ${prefix} || g || '.jpg', ${options.stage ?? 'push'}, ${options.stage === 'live' ? 'done' : 'waiting'}, ${config.host}
      FROM generate_series(1, ${count}) g
    RETURNING id, image_hash`.execute(db);
  const files: string[] = [];
  let seed = 0;
  for (const row of rows) {
    const presets: ImageData['presets'] = {};
    for (const [preset, width] of Object.entries(PRESETS)) {
      const rel = thumbnailRelativePath(country, row.image_hash, preset, 'jpg');
      const bytes = await jpegBytes(width, seed++);
      const file = thumbnailStorePath(config, rel);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, bytes);
      presets[preset] = { width, height: Math.round(width * 0.75), bytes: bytes.length, path: rel };
      files.push(rel);
    }
    const imageData: ImageData = { original: { width: 640, height: 480, format: 'jpeg', bytes: 1000 }, contentHash: row.image_hash, presets };
    const json = JSON.stringify(imageData);
    await db
      .updateTable('live_images')
      .set({ image_data: json, live_data: options.stage === 'live' ? json : null })
      .where('id', '=', row.id)
      .execute();
  }
  return files;
}

/** Files of `files` that are not byte-identical below `root` (missing or different). */
export function differingFiles(storeRoot: string, root: string, files: string[]): string[] {
  return files.filter((f) => {
    const target = path.join(root, f);
    return !fs.existsSync(target) || !fs.readFileSync(target).equals(fs.readFileSync(path.join(storeRoot, f)));
  });
}
