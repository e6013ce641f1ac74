/**
 * A small typed reader over the YAML AST that records every problem with
 * its line and field path instead of stopping at the first one.
 *
 *   Val (a node + its path + its line)
 *     .map(knownFields) -> Fields   (unknown keys reported, with "did you mean")
 *     .list()           -> Val[]
 *     .str() / .int() / .bool()
 *
 * Readers return `undefined` after reporting, so callers keep going and the
 * whole document is checked in one pass.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, type LineCounter, type Node } from "yaml";
import type { Issue } from "../../errors.js";
import { type AliasBudget, AliasIndex } from "./aliases.js";
import { didYouMean } from "./suggest.js";

export interface Problem extends Issue {
  readonly file: string;
  readonly line: number;
  readonly path: string;
  /** True when the field is valid Cilium but Membrane cannot enforce it (yet). */
  readonly unsupported: boolean;
}

/** Per-document reading context: where problems go and how offsets become lines. */
export class Ctx {
  readonly problems: Problem[] = [];
  /** Accepted, but the user should know (e.g. a field the API server drops). */
  readonly warnings: Problem[] = [];
  readonly file: string;
  private readonly lc: LineCounter;
  private readonly aliases: AliasIndex;

  constructor(params: { file: string; lc: LineCounter; doc: Document; budget: AliasBudget }) {
    this.file = params.file;
    this.lc = params.lc;
    this.aliases = new AliasIndex(params.doc, params.budget, params.file, (n) => this.lineOf(n, 1));
  }

  lineOf(node: unknown, fallback: number): number {
    const r = (node as { range?: [number, number, number] } | null | undefined)?.range;
    return r ? this.lc.linePos(r[0]).line : fallback;
  }

  /** Follows YAML aliases (`*anchor`) to the node they name; throws INPUT_LIMIT_EXCEEDED past the alias budget. */
  resolve(node: unknown): Node | null {
    if (isAlias(node)) return this.aliases.resolve(node) ?? null;
    return (node as Node | null | undefined) ?? null;
  }

  report(line: number, path: string, message: string, unsupported = false): void {
    this.problems.push({ file: this.file, line, path, message, unsupported });
  }

  warn(line: number, path: string, message: string): void {
    this.warnings.push({ file: this.file, line, path, message, unsupported: false });
  }
}

export type Kind = "mapping" | "list" | "string" | "number" | "boolean" | "null";

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  const k = SIMPLE_KEY.test(key) ? key : `"${key}"`;
  if (path === "") return SIMPLE_KEY.test(key) ? key : `[${k}]`;
  return SIMPLE_KEY.test(key) ? `${path}.${k}` : `${path}[${k}]`;
}

/** One YAML value with its place in the document. */
export class Val {
  readonly ctx: Ctx;
  readonly node: Node | null;
  /** Full field path, used in problems. */
  readonly path: string;
  /** Path relative to the resource (differs from `path` inside a `kind: List`). */
  readonly rel: string;
  readonly line: number;

  constructor(p: { ctx: Ctx; node: Node | null; path: string; rel: string; line: number }) {
    this.ctx = p.ctx;
    this.node = p.node;
    this.path = p.path;
    this.rel = p.rel;
    this.line = p.line;
  }

  child(key: string | number, rawNode: unknown): Val {
    const node = this.ctx.resolve(rawNode);
    return new Val({
      ctx: this.ctx,
      node,
      path: childPath(this.path, key),
      rel: childPath(this.rel, key),
      line: this.ctx.lineOf(node, this.line),
    });
  }

  /** The same node seen as the root of a resource (its `rel` path restarts). */
  asResourceRoot(): Val {
    return new Val({ ctx: this.ctx, node: this.node, path: this.path, rel: "", line: this.line });
  }

  get kind(): Kind {
    const n = this.node;
    if (n === null) return "null";
    if (isMap(n)) return "mapping";
    if (isSeq(n)) return "list";
    if (isScalar(n)) {
      const v = n.value;
      if (v === null || v === undefined) return "null";
      if (typeof v === "number" || typeof v === "bigint") return "number";
      if (typeof v === "boolean") return "boolean";
      return "string";
    }
    return "null";
  }

  error(message: string): undefined {
    this.ctx.report(this.line, this.path, message);
    return undefined;
  }

  /** Accepts the value but tells the user something about it. */
  warn(message: string): void {
    this.ctx.warn(this.line, this.path, message);
  }

  unsupported(message: string): undefined {
    this.ctx.report(this.line, this.path, message, true);
    return undefined;
  }

  private wrongType(want: string): undefined {
    return this.error(`must be ${want}, not ${article(this.kind)}`);
  }

  /** A mapping whose keys must all be in `known`; unknown keys are reported (with a suggestion). */
  map(known: readonly string[], explain?: (key: string) => string | undefined): Fields | undefined {
    const n = this.node;
    if (!isMap(n)) return this.wrongType("a mapping");
    const entries = new Map<string, Val>();
    for (const pair of n.items) {
      const keyNode = this.ctx.resolve(pair.key);
      const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
      const keyLine = this.ctx.lineOf(keyNode, this.line);
      if (!known.includes(key)) {
        const why = explain?.(key);
        const hint = why ?? suggestion(key, known);
        this.ctx.report(keyLine, childPath(this.path, key), `unknown field "${key}"${hint}`);
        continue;
      }
      const v = this.child(key, pair.value);
      entries.set(key, v.node === null ? v.at(keyLine) : v);
    }
    return new Fields(this, entries);
  }

  /** The value of key `name` of this mapping, without checking the other keys. */
  peek(name: string): Val | undefined {
    const n = this.node;
    if (!isMap(n)) return undefined;
    const pair = n.items.find((p) => {
      const k = this.ctx.resolve(p.key);
      return isScalar(k) && k.value === name;
    });
    if (pair === undefined) return undefined;
    const v = this.child(name, pair.value);
    return v.kind === "null" ? undefined : v;
  }

  /** A free-form mapping (labels, annotations): every key with its value. */
  entries(): [string, Val][] | undefined {
    const n = this.node;
    if (!isMap(n)) return this.wrongType("a mapping");
    return n.items.map((pair) => {
      const keyNode = this.ctx.resolve(pair.key);
      const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
      const v = this.child(key, pair.value);
      return [key, v.node === null ? v.at(this.ctx.lineOf(keyNode, this.line)) : v];
    });
  }

  /** The same value reported at another line (a null value is reported at its key). */
  at(line: number): Val {
    return new Val({ ctx: this.ctx, node: this.node, path: this.path, rel: this.rel, line });
  }

  list(): Val[] | undefined {
    const n = this.node;
    if (!isSeq(n)) return this.wrongType("a list");
    return n.items.map((item, i) => this.child(i, item));
  }

  str(): string | undefined {
    if (this.kind !== "string") return this.wrongType("a string");
    return String((this.node as { value: unknown }).value);
  }

  /** A string, or a number given unquoted (as Kubernetes' int-or-string fields). */
  strOrNum(): string | number | undefined {
    const k = this.kind;
    if (k !== "string" && k !== "number") return this.wrongType("a string or a number");
    const v = (this.node as { value: unknown }).value;
    return typeof v === "number" ? v : String(v);
  }

  bool(): boolean | undefined {
    if (this.kind !== "boolean") return this.wrongType("true or false");
    return (this.node as { value: unknown }).value === true;
  }

  /** An integer in [min, max]; a decimal string is accepted when `allowString`. */
  int(min: number, max: number, allowString = false): number | undefined {
    const v = allowString
      ? this.strOrNum()
      : this.kind === "number"
        ? this.strOrNum()
        : this.wrongType("a number");
    if (v === undefined) return undefined;
    const n = typeof v === "number" ? v : /^-?\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
    if (!Number.isInteger(n)) return this.error(`must be an integer, not ${JSON.stringify(v)}`);
    if (n < min || n > max) return this.error(`must be between ${min} and ${max}, not ${n}`);
    return n;
  }

  /** A list of strings; non-strings are reported. */
  strings(): string[] | undefined {
    const items = this.list();
    if (!items) return undefined;
    const out: string[] = [];
    let ok = true;
    for (const it of items) {
      const s = it.str();
      if (s === undefined) ok = false;
      else out.push(s);
    }
    return ok ? out : undefined;
  }
}

/** The fields of one mapping, after unknown keys were reported. */
export class Fields {
  readonly self: Val;
  private readonly entries: ReadonlyMap<string, Val>;

  constructor(self: Val, entries: ReadonlyMap<string, Val>) {
    this.self = self;
    this.entries = entries;
  }

  /** The field's value; undefined when absent or `null` (as Kubernetes treats them). */
  get(name: string): Val | undefined {
    const v = this.entries.get(name);
    return v === undefined || v.kind === "null" ? undefined : v;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** A required field: reports "is required" at the mapping when absent. */
  need(name: string): Val | undefined {
    const v = this.get(name);
    if (v === undefined) {
      this.self.ctx.report(this.self.line, childPath(this.self.path, name), `field "${name}" is required`);
    }
    return v;
  }

  /** True when the field holds a non-empty list (or any non-list, non-null value). */
  nonEmpty(name: string): boolean {
    const v = this.get(name);
    if (v === undefined) return false;
    return !(isSeq(v.node) && v.node.items.length === 0);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }
}

function article(k: Kind): string {
  return k === "null" ? "null" : k === "mapping" ? "a mapping" : k === "list" ? "a list" : `a ${k}`;
}

function suggestion(key: string, known: readonly string[]): string {
  const s = didYouMean(key, known);
  return s === undefined ? "" : `; did you mean "${s}"?`;
}
