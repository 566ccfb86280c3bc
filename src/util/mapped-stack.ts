import fs from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A stack trace's frames in the compiled code (`dist/bin/chunks/chunk-X.js:2037:46`, `dist/src/...js`) named by
 * the TypeScript they were made from (`src/cli/lis.ts:37:15`), through the `.js.map` beside each file.
 *
 * Why not Node's own `--enable-source-maps` (process.setSourceMapsEnabled): it reads and parses the map of every
 * module as it loads, ~3.5-5 MB of JSON for an executable's bundle (the maps carry the TypeScript and the bundled
 * dependencies' code): 20-90 ms more CPU at every start, and the parsed maps held in memory for the process's
 * life. Here a map is read only when a bug's stack is written (stackOf, runCommand), once per file, then kept for
 * the next. A stack Node already mapped (listing code running with the flag) has no `.js` frame to map.
 */
export function mappedStack(stack: string): string {
  return stack
    .split('\n')
    .map((line) => mappedFrame(line) ?? line)
    .join('\n');
}

const FRAME = /^(\s*at (?:.*? \()?)((?:file:\/\/)?\/.*?\.m?js):(\d+):(\d+)(\)?)\s*$/;

/** One `at ...` line with its place in the TypeScript, or null when it is not a frame of a mapped file. */
function mappedFrame(line: string): string | null {
  const frame = FRAME.exec(line);
  if (!frame) return null;
  const [, head, where, lineText, columnText, tail] = frame;
  const file = where.startsWith('file://') ? fileURLToPath(where) : where;
  const map = sourceMapOf(file);
  if (!map) return null;
  // findEntry counts from 0; stack traces from 1.
  const entry = map.map.findEntry(Number(lineText) - 1, Number(columnText) - 1) as Partial<{
    originalSource: string;
    originalLine: number;
    originalColumn: number;
  }>;
  if (entry.originalSource === undefined || entry.originalLine === undefined || entry.originalColumn === undefined) return null;
  const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : path.resolve(map.dir, entry.originalSource);
  return `${head}${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}${tail}`;
}

// Per compiled file: its map, or null when it has none (read once either way). Bounded by the package's own files.
const maps = new Map<string, { map: SourceMap; dir: string } | null>();

function sourceMapOf(file: string): { map: SourceMap; dir: string } | null {
  if (maps.has(file)) return maps.get(file)!;
  let found: { map: SourceMap; dir: string } | null = null;
  try {
    const payload = JSON.parse(fs.readFileSync(`${file}.map`, 'utf8')) as { sourceRoot?: string };
    found = { map: new SourceMap(payload as ConstructorParameters<typeof SourceMap>[0]), dir: path.resolve(path.dirname(file), payload.sourceRoot ?? '') };
  } catch {
    // No map beside it (Node's own modules, a dependency's file) or not readable: the frame stays as it is.
  }
  maps.set(file, found);
  return found;
}
