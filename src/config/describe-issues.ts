import * as z from 'zod';

/** The parts of a JSON Schema node that say which keys an object has. */
interface KeysNode {
  properties?: Record<string, KeysNode>;
  propertyNames?: { enum?: unknown[] };
  additionalProperties?: KeysNode | boolean;
  items?: KeysNode;
}

/**
 * The keys the schema knows at `path` (`['queue']` -> chunkSize, maxAttempts, ...), or none where it cannot
 * tell (inside a union, whose branches have keys of their own).
 */
function knownKeysAt(schema: KeysNode, path: PropertyKey[]): string[] {
  let node: KeysNode | undefined = schema;
  for (const part of path) {
    if (!node) return [];
    if (node.properties && typeof part === 'string' && part in node.properties) node = node.properties[part];
    else if (typeof node.additionalProperties === 'object') node = node.additionalProperties;
    else if (node.items && typeof part === 'number') node = node.items;
    else return [];
  }
  if (node?.properties) return Object.keys(node.properties);
  return (node?.propertyNames?.enum ?? []).map(String);
}

/** Pure: the edit distance of two short words: insertions, deletions, substitutions, and two letters swapped (`hots`, `host`) as one. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** Pure: the known key an unknown one most likely misspells (`chunksize` -> `chunkSize`), if any is close. */
export function closestKey(unknown: string, known: string[]): string | undefined {
  const lower = unknown.toLowerCase();
  const scored = known.map((key) => ({ key, distance: key.toLowerCase() === lower ? 0 : editDistance(key.toLowerCase(), lower) }));
  const best = scored.sort((x, y) => x.distance - y.distance)[0];
  // Two edits at most, and fewer than a third of the word: `hots` is `host`, `foo` is nothing.
  return best && best.distance <= Math.min(2, Math.floor(unknown.length / 3)) ? best.key : undefined;
}

const dotted = (path: PropertyKey[]) => (path.length ? path.map(String).join('.') : '(top level)');

/**
 * One line per problem, each naming the key and what it accepts, e.g. `queue.chunkSize: Too big: expected
 * number to be <=10000`; an unknown key by its whole path, with the key it most likely misspells
 * (`queue.chunksize: unknown key; did you mean queue.chunkSize?`) or else the keys there are.
 */
export function describeIssues(error: z.ZodError, schema: z.ZodType): string {
  let keysSchema: KeysNode | undefined;
  const lines = error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      keysSchema ??= z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as KeysNode;
      const known = knownKeysAt(keysSchema, issue.path);
      return issue.keys.map((key) => {
        const near = closestKey(key, known);
        const hint = near ? `; did you mean ${dotted([...issue.path, near])}?` : known.length ? ` (the keys here: ${known.join(', ')})` : '';
        return `${dotted([...issue.path, key])}: unknown key${hint}`;
      });
    }
    // A record's key that its rule refuses (a preset named `Small`): zod says only "Invalid key in record"; the rule says what is allowed.
    if (issue.code === 'invalid_key') return [`${dotted(issue.path)}: not a valid name here: ${issue.issues.map((i) => i.message).join('; ')}`];
    // A value that fits no form (`log.maxFiles: true`): zod says only "Invalid input"; each form says what it expects.
    if (issue.code === 'invalid_union' && issue.errors.length) {
      return [`${dotted(issue.path)}: ${issue.errors.map((branch) => branch.map((i) => i.message).join(', ')).join('; or ')}`];
    }
    return [`${dotted(issue.path)}: ${issue.message}`];
  });
  return lines.map((line) => `  ${line}`).join('\n');
}
