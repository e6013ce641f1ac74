/**
 * DNS names and Cilium's `matchName` / `matchPattern` (toFQDNs, DNS rules, TLS serverNames).
 *
 *   "*.Cilium.io"  --compileFqdnPattern-->  (name) => boolean     compile once, match many
 *   "Sub.cilium.IO" --normalizeName-->  "sub.cilium.io."           ASCII lower-case, trailing dot
 *
 * Pattern semantics (semantics §12, Cilium's pkg/fqdn/matchpattern):
 *   - only stars (`*`, `**`, `*.`)  every name, and the root `.`
 *   - leading `**.` (2+ stars, dot)  one or more whole labels: `**.a.io` matches `x.a.io`, `x.y.a.io`, not `a.io`
 *   - any other `*`                  `[-a-z0-9_]*` inside one label, never crossing a dot
 *
 * No regular expression is built: a pattern is compiled into per-label globs
 * and matched by a two-pointer scan, so matching is linear in the name
 * whatever the pattern (a backtracking RegExp of `*a*a*a*b` is not).
 *
 * Deliberate, fail-closed differences from Cilium's regexes: a name with an
 * empty label (`.a.io.`, `a..io.`) or a character outside `[-a-z0-9_]` matches
 * no pattern (DNS names on the wire cannot have empty labels; Cilium's `*`
 * would match an empty first label). `matchName` is exact after normalisation.
 * Lower-casing is ASCII only (RFC 4343): `K` (U+212A KELVIN SIGN) is not `k`.
 */
import { MembraneError } from "../../errors.js";

/** Longest accepted matchName / matchPattern, as Cilium validates. */
export const MAX_FQDN_LENGTH = 255;

/** ASCII lower-case and a trailing dot (`dns.FQDN`); `""` becomes the root `.`. */
export function normalizeName(name: string): string {
  const lower = asciiLower(name);
  return lower.endsWith(".") ? lower : lower + ".";
}

function asciiLower(s: string): string {
  // Only A-Z change; String#toLowerCase would also fold non-ASCII letters into ASCII ones.
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** A label of a DNS name as patterns see it: 1+ chars of `[-a-z0-9_]` (after lower-casing). */
const LABEL_CHARS = /^[-a-z0-9_]+$/;
const PATTERN_CHARS = /^[-a-zA-Z0-9_.*]+$/;
const NAME_CHARS = /^[-a-zA-Z0-9_.]+$/;

type LabelGlob =
  /** No star: the label must equal it. */
  | { readonly literal: string }
  /** Split on `*`: first part is a prefix, last a suffix, the middle ones appear in order. */
  | { readonly parts: readonly string[]; readonly minLength: number };

interface CompiledPattern {
  readonly all: boolean;
  /** Leading `**.`: one or more arbitrary labels before `labels`. */
  readonly subdomains: boolean;
  readonly labels: readonly LabelGlob[];
}

/**
 * Checks a matchPattern and says what is wrong with it, or undefined when it
 * is valid. Allowed: `[-a-zA-Z0-9_.*]`, at most 255 characters, no empty label.
 */
export function fqdnPatternProblem(pattern: string): string | undefined {
  return nameProblem(pattern, PATTERN_CHARS, "letters, digits, '-', '_', '.' and '*'");
}

/** Like fqdnPatternProblem, for matchName (no `*`). */
export function fqdnNameProblem(name: string): string | undefined {
  return nameProblem(name, NAME_CHARS, "letters, digits, '-', '_' and '.'");
}

function nameProblem(s: string, chars: RegExp, allowed: string): string | undefined {
  if (s === "") return "it is empty";
  if (s.length > MAX_FQDN_LENGTH) return `it is ${s.length} characters long (at most ${MAX_FQDN_LENGTH})`;
  if (!chars.test(s)) return `only ${allowed} are allowed`;
  const body = s.endsWith(".") ? s.slice(0, -1) : s;
  if (body === "" || body.split(".").some((l) => l === "")) return "it has an empty label";
  return undefined;
}

/**
 * Compiles a matchPattern (or TLS server name pattern) into a predicate over
 * names. Throws POLICY_INVALID when the pattern is not valid; the parser
 * validates first, so this only fires on internal misuse.
 */
export function compileFqdnPattern(pattern: string): (name: string) => boolean {
  const c = compilePattern(pattern);
  return (name) => matchCompiled(c, name);
}

function compilePattern(pattern: string): CompiledPattern {
  const problem = fqdnPatternProblem(pattern);
  if (problem !== undefined) {
    throw new MembraneError("POLICY_INVALID", `Cannot use FQDN pattern "${printable(pattern)}": ${problem}`, {
      hint: 'Examples: "*.example.com", "**.example.com", "api-*.example.com", "*".',
    });
  }
  const p = normalizeName(pattern);
  if (/^\*+\.$/.test(p)) return { all: true, subdomains: false, labels: [] };
  let body = p.slice(0, -1);
  let subdomains = false;
  const lead = /^\*\*+\./.exec(body);
  if (lead) {
    subdomains = true;
    body = body.slice(lead[0].length);
  }
  return { all: false, subdomains, labels: body.split(".").map(compileLabel) };
}

function compileLabel(label: string): LabelGlob {
  if (!label.includes("*")) return { literal: label };
  const parts = label.split("*");
  const minLength = parts.reduce((n, s) => n + s.length, 0);
  return { parts, minLength };
}

function matchCompiled(c: CompiledPattern, name: string): boolean {
  const n = normalizeName(name);
  if (c.all && n === ".") return true;
  const labels = n.slice(0, -1).split(".");
  for (const l of labels) if (!LABEL_CHARS.test(l)) return false;
  if (c.all) return true;
  const k = c.labels.length;
  if (c.subdomains ? labels.length <= k : labels.length !== k) return false;
  const offset = labels.length - k;
  for (let i = 0; i < k; i++) {
    if (!labelMatches(c.labels[i] as LabelGlob, labels[offset + i] as string)) return false;
  }
  return true;
}

/**
 * Glob match of one label. The label holds only `[-a-z0-9_]` (checked by the
 * caller), exactly what a star may stand for, so stars are unrestricted
 * here, and taking each middle part at its leftmost place is optimal.
 */
function labelMatches(g: LabelGlob, label: string): boolean {
  if ("literal" in g) return g.literal === label;
  if (label.length < g.minLength) return false;
  const first = g.parts[0] as string;
  const last = g.parts[g.parts.length - 1] as string;
  if (!label.startsWith(first) || !label.endsWith(last)) return false;
  let pos = first.length;
  const end = label.length - last.length;
  for (let i = 1; i < g.parts.length - 1; i++) {
    const part = g.parts[i] as string;
    const at = label.indexOf(part, pos);
    if (at < 0 || at + part.length > end) return false;
    pos = at + part.length;
  }
  return pos <= end;
}

/** A toFQDNs selector or DNS rule. */
export interface FqdnRule {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

// Compiled predicates per rule object (rules are immutable). A WeakMap holds
// no rule alive and is invisible to callers: a memo, not state.
const compiledRules = new WeakMap<FqdnRule, (name: string) => boolean>();

/**
 * Whether a name matches a rule. `matchName` wins when both are set (as in
 * Cilium's FQDNSelector); a rule with neither matches nothing.
 */
export function fqdnMatches(rule: FqdnRule, name: string): boolean {
  let m = compiledRules.get(rule);
  if (!m) {
    m = compileFqdnRule(rule);
    compiledRules.set(rule, m);
  }
  return m(name);
}

export function compileFqdnRule(rule: FqdnRule): (name: string) => boolean {
  if (rule.matchName !== undefined) {
    const want = normalizeName(rule.matchName);
    return (name) => normalizeName(name) === want;
  }
  if (rule.matchPattern !== undefined) return compileFqdnPattern(rule.matchPattern);
  return () => false;
}

/** DNS rules of a port: a query name passes if any rule matches. No rules: nothing passes. */
export function compileDnsRules(rules: readonly FqdnRule[]): (name: string) => boolean {
  const ms = rules.map(compileFqdnRule);
  return (name) => ms.some((m) => m(name));
}

/** TLS `serverNames`: the SNI passes if any pattern matches. */
export function compileServerNames(patterns: readonly string[]): (sni: string) => boolean {
  const ms = patterns.map(compileFqdnPattern);
  return (sni) => ms.some((m) => m(sni));
}

/** For error messages: control characters shown escaped, long text cut. */
function printable(s: string): string {
  const cut = s.length > 80 ? s.slice(0, 80) + "..." : s;
  return JSON.stringify(cut).slice(1, -1);
}
