/**
 * Reading plain YAML values (already turned into JS) with the field path of
 * every problem: `spec.rules[0].matches[1].path.type: must be one of ...`.
 * Problems are collected (the whole document is checked) and thrown once by
 * the caller: a rejected file changes nothing.
 */
export interface FieldProblem {
  readonly path: string;
  readonly message: string;
}

export class Fields {
  readonly problems: FieldProblem[] = [];

  fail(path: string, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  obj(v: unknown, path: string): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) return this.fail(path, "must be a mapping");
    return v as Record<string, unknown>;
  }

  /** Refuses fields outside `allowed` (an unknown field is a typo until proven otherwise). */
  known(o: Record<string, unknown> | undefined, path: string, allowed: readonly string[]): void {
    if (!o) return;
    for (const k of Object.keys(o))
      if (!allowed.includes(k)) this.fail(join(path, k), `unknown field (known here: ${allowed.join(", ")})`);
  }

  arr(v: unknown, path: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.fail(path, "must be a list");
      return [];
    }
    return v;
  }

  str(v: unknown, path: string, required = false): string | undefined {
    if (v === undefined || v === null) return required ? this.fail(path, "is required") : undefined;
    if (typeof v !== "string") return this.fail(path, `must be a string, not ${JSON.stringify(v)}`);
    if (required && v === "") return this.fail(path, "must not be empty");
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, values: readonly T[], dflt?: T): T | undefined {
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    const s = this.str(v, path, true);
    if (s === undefined) return undefined;
    if (!(values as readonly string[]).includes(s))
      return this.fail(path, `must be one of ${values.join(", ")}, not ${JSON.stringify(s)}`);
    return s as T;
  }

  int(v: unknown, path: string, lo: number, hi: number, required = false): number | undefined {
    if (v === undefined || v === null) return required ? this.fail(path, "is required") : undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
      return this.fail(path, `must be an integer from ${lo} to ${hi}, not ${JSON.stringify(v)}`);
    return v;
  }

  labels(v: unknown, path: string): Record<string, string> {
    const o = this.obj(v, path) ?? {};
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(o)) {
      const s = this.str(x, join(path, k), false);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }
}

export function join(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return path === "" ? key : `${path}.${key}`;
}

/** DNS-1123 subdomain, as Kubernetes object names. */
export const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A listener or route hostname: DNS name, optionally `*.` first; no IP address, no port. */
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IPV4 = /^[0-9]+(\.[0-9]+){3}$/;

export function hostnameProblem(h: string): string | undefined {
  if (h.length > 253) return "must be at most 253 characters";
  if (h !== h.toLowerCase()) return "must be lower case";
  if (IPV4.test(h) || h.includes(":")) return "must be a DNS name, not an IP address";
  if (!HOSTNAME.test(h)) return "must be a DNS name, optionally starting with `*.`";
  return undefined;
}

/** HTTP header names (RFC 7230 token). */
export const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
