/**
 * A small checker over plain YAML values (parse.ts): every problem is recorded
 * with its document and field path, so a file is judged whole in one pass.
 */
import type { Issue } from "../errors.js";
import { addrString, parseAddr } from "../labels/cidr.js";

export class Reader {
  readonly problems: Issue[] = [];
  /** `file` and the document's number in it (1-based), named in every problem. */
  constructor(
    private readonly file: string,
    private readonly doc: number,
  ) {}

  report(path: string, why: string): undefined {
    this.problems.push({ file: this.file, path: `document ${this.doc}: ${path}`, message: why });
    return undefined;
  }

  /** A mapping whose keys must be among `known`. */
  map(v: unknown, path: string, known: readonly string[]): Record<string, unknown> | undefined {
    if (v === null || typeof v !== "object" || Array.isArray(v))
      return this.report(path, `must be a mapping, not ${kindOf(v)}`);
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (!known.includes(k))
        this.report(`${path}.${k}`, `is not a known field (known: ${known.join(", ")})`);
    return o;
  }

  list(v: unknown, path: string, max = 10_000): unknown[] | undefined {
    if (!Array.isArray(v)) return this.report(path, `must be a list, not ${kindOf(v)}`);
    if (v.length > max) return this.report(path, `has ${v.length} items, more than ${max}`);
    return v;
  }

  str(v: unknown, path: string, allowed?: readonly string[]): string | undefined {
    if (typeof v !== "string") return this.report(path, `must be a string, not ${kindOf(v)}`);
    if (allowed && !allowed.includes(v))
      return this.report(path, `must be one of ${allowed.join(", ")}, not "${v}"`);
    return v;
  }

  int(v: unknown, path: string, lo: number, hi: number): number | undefined {
    if (typeof v !== "number" || !Number.isInteger(v))
      return this.report(path, `must be a whole number, not ${kindOf(v)}`);
    if (v < lo || v > hi) return this.report(path, `must be from ${lo} to ${hi}, not ${v}`);
    return v;
  }

  bool(v: unknown, path: string): boolean | undefined {
    if (typeof v !== "boolean") return this.report(path, `must be true or false, not ${kindOf(v)}`);
    return v;
  }

  ipv4(v: unknown, path: string): string | undefined {
    const s = this.str(v, path);
    if (s === undefined) return undefined;
    if (parseAddr(s)?.family !== 4) return this.report(path, `"${s}" is not an IPv4 address`);
    return s;
  }

  /** An IPv4 or IPv6 address (`family`: only that one), in its canonical text (IPv6: RFC 5952). */
  ip(v: unknown, path: string, family?: 4 | 6): string | undefined {
    const s = this.str(v, path);
    if (s === undefined) return undefined;
    const a = s.includes("%") ? undefined : parseAddr(s);
    if (!a || (family !== undefined && a.family !== family))
      return this.report(path, `"${s}" is not an ${family === undefined ? "IP" : `IPv${family}`} address`);
    return addrString(a.family, a.value);
  }

  strMap(v: unknown, path: string): Record<string, string> | undefined {
    const o = this.map(v, path, Object.keys((v ?? {}) as object));
    if (!o) return undefined;
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(o)) {
      const s = this.str(x, `${path}.${k}`);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }
}

export function kindOf(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** A DNS-1123 label (Service and port names), as Kubernetes requires. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A DNS-1123 subdomain (EndpointSlice names). */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
