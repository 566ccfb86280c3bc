// The executables' first modules: scripts/build.mjs bundles each from it, bench/startup.ts runs each as a module tree.
/**
 * What each executable in bin/ runs: the compiled module it starts from (dist/bin/<name>.js is made from it).
 * A daemon's start-up was mostly Node loading ~500 small modules (kysely alone is 262 files, zod 95); one bundle
 * per executable, sharing chunks, about halves that CPU for every `lis` command and daemon start (bench:startup).
 */
export const EXECUTABLES = {
  lis: 'dist/src/cli/lis.js',
  lis_cron_frontend: 'dist/src/cron/cron-frontend-main.js',
  lis_downloadd: 'dist/src/download/downloadd-main.js',
  lis_imaged: 'dist/src/imaged/imaged-main.js',
  lis_managerd: 'dist/src/manager/managerd-main.js',
  lis_metrics: 'dist/src/metrics/metrics-main.js',
  lis_pusherd: 'dist/src/push/pusherd-main.js',
  lis_thumbnaild: 'dist/src/thumbnail/thumbnaild-main.js',
  servicectl: 'dist/src/services/servicectl-main.js',
};
