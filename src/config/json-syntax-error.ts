/**
 * Where a JSON text first breaks, and what was expected there, without quoting any of it. Node's own message quotes
 * the text around the fault (`Unexpected token 'S', ..."assword": Sup3rSecre"... is not valid JSON`), and a config
 * file's faults sit beside its secrets (a password pasted without quotes): the message reached the daemons' logs,
 * servicectl's output and cron's mail. Null when the text is valid JSON. Pure.
 */
export function jsonSyntaxError(text: string): { line: number; column: number; what: string } | null {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxAt(i, what);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const literal = (word: string) => {
    if (!text.startsWith(word, i)) fail('expected a value: a string in double quotes, a number, true, false, null, an object or a list');
    i += word.length;
  };
  const string = () => {
    const start = i++;
    for (;;) {
      if (i >= text.length) {
        // Said where it opens: where it ends, the text does.
        i = start;
        fail('a string is not closed');
      }
      const c = text[i];
      if (c === '"') return void i++;
      if (c < ' ') fail('a control character (a line break, a tab) inside a string: write it as \\n, \\t');
      if (c === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('a \\u escape needs 4 hex digits');
          i += 5;
        } else if (text[i] !== undefined && '"\\/bfnrt'.includes(text[i])) i++;
        else fail('an unknown escape after \\');
      } else i++;
    }
  };
  const number = () => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!match) return fail('expected a value: a string in double quotes, a number, true, false, null, an object or a list');
    i += match[0].length;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key in double quotes');
        string();
        ws();
        if (text[i] !== ':') fail("expected ':' after the key");
        i++;
        value();
        ws();
        if (text[i] === '}') return void i++;
        if (text[i] !== ',') fail("expected ',' or '}' after a value");
        i++;
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ']') return void i++;
        if (text[i] !== ',') fail("expected ',' or ']' after a value");
        i++;
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    if (c === undefined) fail('expected a value, but the text ends');
    number();
  };
  try {
    value();
    ws();
    if (i < text.length) fail('expected nothing after the value');
    return null;
  } catch (error) {
    if (!(error instanceof SyntaxAt)) throw error;
    const before = text.slice(0, error.offset);
    const line = before.split('\n').length;
    return { line, column: error.offset - (before.lastIndexOf('\n') + 1) + 1, what: error.what };
  }
}

class SyntaxAt extends Error {
  constructor(
    readonly offset: number,
    readonly what: string,
  ) {
    super(what);
  }
}
