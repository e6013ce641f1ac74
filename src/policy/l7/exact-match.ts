/**
 * Full-string matching of an HTTP rule's RE2 pattern, fast where that is
 * provably the same: the pure-JS RE2 engine costs microseconds per request,
 * and most rules are a literal (`GET`, `/healthz`) or a literal with one
 * repeated atom (`/api/items/[0-9]+`, `/public/.*`).
 *
 *   pattern --simple subset?--> literal: string equality
 *                               one quantified atom: a JS RegExp (^...$), on ASCII input only
 *           --otherwise------> RE2 (re2js), as before
 *
 * Why this subset is safe: its syntax means the same to RE2 and to JS
 * (literal ASCII characters, escaped punctuation, `.`, bracket classes of
 * literal characters and ranges), and with at most one quantifier the
 * backtracking engine tries each split point of the input once: linear
 * time, so a hostile path cannot make the check slow. Input with non-ASCII
 * or control characters goes to RE2 (RE2 counts runes, JS code units; their `.`
 * differ on CR).
 */
import { RE2JS } from "re2js";

export interface ExactMatcher {
  testExact(input: string): boolean;
}

/** Characters that are literal in both syntaxes outside a class. */
const PLAIN = /[A-Za-z0-9 !"#%&',/:;<=>@_`~-]/;
/** Characters allowed (unescaped) inside a bracket class, besides a range's `-`. */
const CLASS_CHAR = /[A-Za-z0-9 !"#%&',./:;<=>@_`~*+?$(){}|]/;

/** A matcher for `pattern` (RE2 syntax, full match); throws as RE2JS.compile does. */
export function compileExact(pattern: string): ExactMatcher {
  const re2 = RE2JS.compile(pattern); // validates, and serves whatever the fast paths do not
  const simple = simpleForm(pattern);
  if (simple === undefined) return re2;
  if (simple.literal !== undefined) {
    const lit = simple.literal;
    return { testExact: (input) => input === lit };
  }
  const js = new RegExp(`^(?:${simple.source})$`);
  return { testExact: (input) => (isAscii(input) ? js.test(input) : re2.testExact(input)) };
}

/** Printable ASCII only: RE2 and JS agree on `.` there (JS's also refuses CR and U+2028/9, RE2's does not). */
function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * The pattern as JS source when it is in the subset (and its literal text
 * when it has no special character at all); undefined otherwise.
 */
function simpleForm(p: string): { source: string; literal?: string } | undefined {
  let literal = "";
  let isLiteral = true;
  let quantifiers = 0;
  let atom = false; // the previous token is an atom a quantifier may follow
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as string;
    if (PLAIN.test(c)) {
      literal += c;
      atom = true;
    } else if (c === "\\") {
      const n = p[i + 1];
      // An escaped ASCII punctuation character is that character in both syntaxes.
      if (n === undefined || !/[!-/:-@[-`{-~]/.test(n)) return undefined;
      literal += n;
      i++;
      atom = true;
    } else if (c === ".") {
      isLiteral = false;
      atom = true;
    } else if (c === "[") {
      const end = classEnd(p, i);
      if (end < 0) return undefined;
      i = end;
      isLiteral = false;
      atom = true;
    } else if (c === "*" || c === "+" || c === "?") {
      if (!atom || ++quantifiers > 1) return undefined;
      // A lazy or possessive suffix, or a second quantifier, is outside the subset.
      if (p[i + 1] === "?" || p[i + 1] === "+" || p[i + 1] === "*") return undefined;
      isLiteral = false;
      atom = false;
    } else return undefined; // groups, alternation, anchors, counted repetition, flags: RE2
  }
  return isLiteral ? { source: p, literal } : { source: p };
}

/** Index of the `]` closing the class opened at `start`, when the class is simple; -1 otherwise. */
function classEnd(p: string, start: number): number {
  let i = start + 1;
  if (p[i] === "^") i++;
  let n = 0;
  for (; i < p.length; i++) {
    const c = p[i] as string;
    if (c === "]" && n > 0) return i;
    if (c === "-" && n > 0 && p[i + 1] !== "]" && p[i + 1] !== undefined) {
      const lo = p[i - 1] as string;
      const hi = p[i + 1] as string;
      if (!/[A-Za-z0-9]/.test(lo) || !/[A-Za-z0-9]/.test(hi) || lo > hi) return -1;
      i++;
      n++;
      continue;
    }
    if (!CLASS_CHAR.test(c)) return -1;
    n++;
  }
  return -1;
}
