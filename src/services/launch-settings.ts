/**
 * How a daemon's Node process is started: what must be set before the process
 * exists (glibc reads MALLOC_* at its first malloc, V8 sizes its heap at start),
 * so neither the code nor the config can set it. The same settings are written
 * in four places: here (servicectl and the benchmarks use it), the daemon's
 * `bin/` launcher's first line (`#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node ...`, so a run
 * by hand gets them too), and its systemd unit; test/launch-settings.test.ts
 * checks that they agree.
 */

/** The environment every daemon starts with; a value already in the caller's environment wins (servicectl). */
export const DAEMON_ENV: Readonly<Record<string, string>> = {
  // Fewer malloc arenas keep an image process's memory flat: lis_thumbnaild's peak on the photo set was
  // 227-238 MB without it, 186-197 MB with it (libvips threads each took an arena of their own).
  MALLOC_ARENA_MAX: '2',
};

/**
 * Node's flags per daemon executable. lis_thumbnaild: V8's young generation
 * at 8 MB a semi-space instead of 16: its heap is small but a stream of
 * short-lived objects (sharp's pipelines and buffers) fills new space to its
 * maximum, 32 MB of RSS; at 8 MB lis_thumbnaild's peak in bench:e2e fell from
 * 188-197 MB to 166-173 MB, CPU per thumbnail within the noise (0-3 % more,
 * for twice the scavenges). Smaller (4 MB) was no better:
 * the buffers of images in flight outlive two scavenges, are promoted, and
 * then wait for a full GC.
 */
export const NODE_FLAGS: Readonly<Record<string, readonly string[]>> = {
  lis_thumbnaild: ['--max-semi-space-size=8'],
};

/** Node's flags for `bin/<name>` (none for most). */
export function nodeFlagsOf(bin: string): readonly string[] {
  return NODE_FLAGS[bin] ?? [];
}
