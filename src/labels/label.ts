/**
 * Labels and label sets.
 *
 *   "k8s:app=web"  --parseLabel-->  {source: "k8s", key: "app", value: "web"}
 *   many labels    --LabelSet.from-->  sorted, de-duplicated, immutable set
 *
 * A label's source says who vouches for it: `k8s` (workload labels and the
 * metadata Membrane derives for them), `reserved` (identities Membrane owns),
 * `cidr` and `fqdn` (local identities of outside addresses). `any` exists only
 * in selectors, where it means "a label with this key from any source".
 */
import { MembraneError } from "../errors.js";

export const LABEL_SOURCES = [
  "k8s",
  "reserved",
  "any",
  "cidr",
  "fqdn",
  "cidrgroup",
  "node",
  "container",
  "unspec",
] as const;
export type LabelSource = (typeof LABEL_SOURCES)[number];

export function isLabelSource(s: string): s is LabelSource {
  return (LABEL_SOURCES as readonly string[]).includes(s);
}

export interface Label {
  readonly source: string;
  readonly key: string;
  readonly value: string;
}

export function labelString(l: Label): string {
  return l.value === "" ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/**
 * Splits `source:key` into its parts. A key with no known source prefix has
 * source `defaultSource`. Only known sources split, so a key that happens to
 * contain a colon is never misread as a source.
 */
export function splitSourceKey(s: string, defaultSource: string): { source: string; key: string } {
  const i = s.indexOf(":");
  if (i > 0) {
    const src = s.slice(0, i);
    if (isLabelSource(src)) return { source: src, key: s.slice(i + 1) };
  }
  return { source: defaultSource, key: s };
}

/** Parses `source:key=value` (source optional, default `defaultSource`). */
export function parseLabel(s: string, defaultSource = "k8s"): Label {
  const eq = s.indexOf("=");
  const sk = eq >= 0 ? s.slice(0, eq) : s;
  const value = eq >= 0 ? s.slice(eq + 1) : "";
  const { source, key } = splitSourceKey(sk, defaultSource);
  if (key === "") throw new MembraneError("LABEL_INVALID", `Cannot parse label "${s}": the key is empty`);
  return { source, key, value };
}

/** An immutable set of labels, at most one value per (source, key). */
export class LabelSet implements Iterable<Label> {
  private readonly sorted: readonly Label[];
  /** "source:key" -> value */
  private readonly bySourceKey: ReadonlyMap<string, string>;
  /** key -> values from any source */
  private readonly byKey: ReadonlyMap<string, readonly string[]>;
  private cachedString: string | undefined;

  private constructor(labels: readonly Label[]) {
    const m = new Map<string, Label>();
    for (const l of labels) m.set(`${l.source}:${l.key}`, l);
    this.sorted = [...m.values()].sort((a, b) => cmp(a.source, b.source) || cmp(a.key, b.key));
    this.bySourceKey = new Map(this.sorted.map((l) => [`${l.source}:${l.key}`, l.value]));
    const byKey = new Map<string, string[]>();
    for (const l of this.sorted) {
      const arr = byKey.get(l.key);
      if (arr) arr.push(l.value);
      else byKey.set(l.key, [l.value]);
    }
    this.byKey = byKey;
  }

  static readonly EMPTY = new LabelSet([]);

  static from(labels: Iterable<Label>): LabelSet {
    return new LabelSet([...labels]);
  }

  /** From a plain `{key: value}` map, all with one source. */
  static fromMap(map: Readonly<Record<string, string>>, source = "k8s"): LabelSet {
    return new LabelSet(Object.entries(map).map(([key, value]) => ({ source, key, value })));
  }

  static parse(strings: Iterable<string>, defaultSource = "k8s"): LabelSet {
    return new LabelSet([...strings].map((s) => parseLabel(s, defaultSource)));
  }

  get size(): number {
    return this.sorted.length;
  }

  [Symbol.iterator](): Iterator<Label> {
    return this.sorted[Symbol.iterator]();
  }

  toArray(): readonly Label[] {
    return this.sorted;
  }

  /** Value of the label with this source and key, `undefined` if absent. Source `any` looks at every source. */
  get(source: string, key: string): string | undefined {
    if (source === "any") return this.byKey.get(key)?.[0];
    return this.bySourceKey.get(`${source}:${key}`);
  }

  /** Every value the key has, across sources when `source` is `any`. */
  values(source: string, key: string): readonly string[] {
    if (source === "any") return this.byKey.get(key) ?? [];
    const v = this.bySourceKey.get(`${source}:${key}`);
    return v === undefined ? [] : [v];
  }

  has(source: string, key: string): boolean {
    return this.values(source, key).length > 0;
  }

  hasSource(source: string): boolean {
    return this.sorted.some((l) => l.source === source);
  }

  /** A new set with these labels added (replacing same source:key). */
  with(labels: Iterable<Label>): LabelSet {
    return new LabelSet([...this.sorted, ...labels]);
  }

  filter(pred: (l: Label) => boolean): LabelSet {
    return new LabelSet(this.sorted.filter(pred));
  }

  /** Canonical string: sorted `source:key=value` joined by commas. Equal sets give equal strings. */
  toString(): string {
    this.cachedString ??= this.sorted.map(labelString).join(",");
    return this.cachedString;
  }

  equals(other: LabelSet): boolean {
    return this.toString() === other.toString();
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
