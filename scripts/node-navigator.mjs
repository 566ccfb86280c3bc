// The `navigator` of the executables' bundles (scripts/build.mjs, esbuild's inject): Node's own where it has one
// (21 and later), else one that says Node. Bundled dependencies that ask which runtime they are in (pg, zod) ask
// it first, and get their answer without building a fetch Response, which loaded all of undici at every start.
export const navigator = globalThis.navigator ?? { userAgent: 'Node.js' };
