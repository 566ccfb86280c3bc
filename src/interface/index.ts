/**
 * ImageSys's public API: the only module other code imports.
 *
 * ```ts
 * import { ImageSys } from 'imagesys';
 * const images = await ImageSys.open();
 * const data = await images.getSearchApiDataForHash('a30ff540a1a736f738146ac899d94375');
 * ```
 */
export { ImageSys, type EnqueueResult, type OpenOptions, type SiImage } from './image-sys.ts';
export type { SearchApiImage } from './search-api-image.ts';
export { lis_hash_for_url, lis_path_for_hash } from '../hash/image-hash.ts';
export type { LisConfig, LisConfigInput } from '../config/config-schema.ts';
