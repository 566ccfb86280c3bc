import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';

const VALUE = 'a string in double quotes, a number, true, false, null, an object or a list';

/** What each of jsonc-parser's codes means to someone editing a config file. */
const WHAT: Record<string, string> = {
  InvalidSymbol: `a character that cannot be here (a value is ${VALUE})`,
  InvalidNumberFormat: 'a number that is not valid',
  PropertyNameExpected: 'expected a key in double quotes',
  ValueExpected: `expected a value: ${VALUE}`,
  ColonExpected: "expected ':' after the key",
  CommaExpected: "expected ',' between two values",
  CloseBraceExpected: "expected ',' or '}' after a value",
  CloseBracketExpected: "expected ',' or ']' after a value",
  EndOfFileExpected: 'expected nothing after the value',
  InvalidCommentToken: 'a comment: JSON has none',
  UnexpectedEndOfComment: 'a comment: JSON has none',
  UnexpectedEndOfString: 'a string is not closed',
  UnexpectedEndOfNumber: 'a number that is not complete',
  InvalidUnicode: 'in the string that starts here, a \\u escape needs 4 hex digits',
  InvalidEscapeCharacter: 'in the string that starts here, an unknown escape after \\',
  InvalidCharacter: 'in the string that starts here, a control character (a line break, a tab): write it as \\n, \\t',
};

/**
 * Where a JSON text first breaks, and what was expected there, without quoting any of it. Node's own message quotes
 * the text around the fault (`Unexpected token 'S', ..."assword": Sup3rSecre"... is not valid JSON`) and names no
 * place; a config file's faults sit beside its secrets (a password pasted without quotes), and the message reached
 * the daemons' logs, servicectl's output and cron's mail. jsonc-parser (VS Code's, strict here: no comments, no
 * trailing commas) finds the place. Null when it finds no fault. Pure.
 */
export function jsonSyntaxError(text: string): { line: number; column: number; what: string } | null {
  const errors: ParseError[] = [];
  parse(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const [first] = errors;
  if (!first) return null;
  const before = text.slice(0, first.offset);
  return {
    line: before.split('\n').length,
    column: first.offset - (before.lastIndexOf('\n') + 1) + 1,
    what: WHAT[printParseErrorCode(first.error)] ?? 'not JSON here',
  };
}
