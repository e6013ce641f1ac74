/**
 * A small reader over YAML nodes that remembers where each value sits, so
 * every complaint names file, line and field path (STYLE.md §7).
 *
 *   parseDocument(text) --Field(node, "queries[2].port")--> typed value | issue
 *
 * Readers never throw: they record an Issue and return undefined, so one run
 * reports every problem of a file at once.
 */
import { isMap, isScalar, isSeq, type LineCounter, type Node, type Pair } from "yaml";
import type { Issue } from "../../errors.js";

export interface ReadContext {
  readonly file: string;
  readonly lines: LineCounter;
  readonly issues: Issue[];
}

/** A YAML value (or its absence) at a field path. */
export class Field {
  constructor(
    readonly ctx: ReadContext,
    readonly node: Node | null | undefined,
    readonly path: string,
    /** Line to blame when the node is absent (the parent's line). */
    private readonly fallbackLine?: number,
  ) {}

  get present(): boolean {
    return this.node !== undefined;
  }

  get line(): number | undefined {
    const r = this.node?.range;
    if (r) return this.ctx.lines.linePos(r[0]).line;
    return this.fallbackLine;
  }

  issue(message: string, line = this.line): undefined {
    const i: Issue = { file: this.ctx.file, path: this.path, message };
    if (line !== undefined) i.line = line;
    this.ctx.issues.push(i);
    return undefined;
  }

  child(key: string, node: Node | null | undefined): Field {
    return new Field(this.ctx, node, this.path ? `${this.path}.${key}` : key, this.line);
  }

  /** The entries of a mapping; keys not in `allowed` are reported. */
  map(allowed: readonly string[]): Map<string, Field> | undefined {
    const n = this.node;
    if (!isMap(n)) return this.issue(`must be a mapping, got ${describe(n)}`);
    const out = new Map<string, Field>();
    for (const pair of n.items as Pair<unknown, unknown>[]) {
      const keyNode = pair.key;
      const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
      const keyLine =
        isScalar(keyNode) && keyNode.range ? this.ctx.lines.linePos(keyNode.range[0]).line : this.line;
      if (key === undefined) {
        this.issue("keys must be plain strings", keyLine);
        continue;
      }
      const f = new Field(
        this.ctx,
        (pair.value ?? null) as Node | null,
        this.path ? `${this.path}.${key}` : key,
        keyLine,
      );
      if (!allowed.includes(key)) {
        f.issue(`unknown field "${key}" (allowed: ${allowed.join(", ")})`, keyLine);
        continue;
      }
      out.set(key, f);
    }
    return out;
  }

  /** A mapping whose keys are free (labels, namespaces): key -> Field. */
  entries(): [string, Field][] | undefined {
    const n = this.node;
    if (!isMap(n)) return this.issue(`must be a mapping, got ${describe(n)}`);
    const out: [string, Field][] = [];
    for (const pair of n.items as Pair<unknown, unknown>[]) {
      const keyNode = pair.key;
      if (!isScalar(keyNode) || typeof keyNode.value !== "string") {
        this.issue("keys must be strings");
        continue;
      }
      const line = keyNode.range ? this.ctx.lines.linePos(keyNode.range[0]).line : this.line;
      const child = new Field(
        this.ctx,
        (pair.value ?? null) as Node | null,
        `${this.path}.${keyNode.value}`,
        line,
      );
      out.push([keyNode.value, child]);
    }
    return out;
  }

  seq(): Field[] | undefined {
    const n = this.node;
    if (!isSeq(n)) return this.issue(`must be a list, got ${describe(n)}`);
    return n.items.map(
      (item, i) => new Field(this.ctx, item as Node | null, `${this.path}[${i}]`, this.line),
    );
  }

  private scalar(): unknown {
    const n = this.node;
    return isScalar(n) ? n.value : NOT_SCALAR;
  }

  str(opts: { nonEmpty?: boolean } = {}): string | undefined {
    const v = this.scalar();
    if (typeof v !== "string") {
      return this.issue(
        `must be a string, got ${describe(this.node)}${v !== NOT_SCALAR ? " (quote it)" : ""}`,
      );
    }
    if (opts.nonEmpty && v === "") return this.issue("must not be empty");
    return v;
  }

  int(min: number, max: number): number | undefined {
    const v = this.scalar();
    if (typeof v !== "number" || !Number.isInteger(v))
      return this.issue(`must be an integer, got ${describe(this.node)}`);
    if (v < min || v > max) return this.issue(`must be between ${min} and ${max}, got ${v}`);
    return v;
  }

  bool(): boolean | undefined {
    const v = this.scalar();
    if (typeof v !== "boolean") return this.issue(`must be true or false, got ${describe(this.node)}`);
    return v;
  }

  oneOf<T extends string>(values: readonly T[]): T | undefined {
    const v = this.scalar();
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      return this.issue(
        `must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}, got ${describe(this.node)}`,
      );
    }
    return v as T;
  }

  /** A string -> string mapping (labels, selectors, headers). */
  stringMap(): Record<string, string> | undefined {
    const e = this.entries();
    if (!e) return undefined;
    const out: Record<string, string> = {};
    for (const [k, f] of e) {
      const v = f.str();
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
}

const NOT_SCALAR = Symbol("not a scalar");

function describe(n: unknown): string {
  if (n === null || n === undefined) return "nothing";
  if (isMap(n)) return "a mapping";
  if (isSeq(n)) return "a list";
  if (isScalar(n)) {
    const v = n.value;
    if (v === null) return "null";
    if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
    return `${typeof v} ${String(v)}`;
  }
  return "an unsupported value";
}
