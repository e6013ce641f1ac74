/**
 * How a conformance replay judges one answer, the way the suite's round
 * tripper does: the status; for a 200, the pod that answered (its name starts
 * with the backend's), its namespace, and the request as that pod saw it
 * (path with query, host, method, header values, absent headers); response
 * header values and absences; for a 3xx, the Location's scheme, host, port
 * (80/443 or none when the scheme's default is expected) and path.
 */
import assert from "node:assert/strict";
import type { Condition } from "../../src/gateway/status.js";
import { INFRA, type Req, type Res } from "./conformance-lab.js";

export interface Expect {
  readonly status?: number;
  /** Service name the answering pod belongs to (a 200). */
  readonly backend?: string;
  readonly namespace?: string;
  /** What the backend saw; path defaults to the request's. */
  readonly path?: string;
  readonly host?: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly absent?: readonly string[];
  readonly responseHeaders?: Record<string, string>;
  readonly responseAbsent?: readonly string[];
  readonly redirect?: { scheme?: string; host?: string; port?: string; path?: string };
}

export interface Case {
  readonly req: Req;
  readonly want: Expect;
}

const lower = (o: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), v]));

/** Checks each answer against its case; every failure is listed, not only the first. */
export function judge(cases: readonly Case[], answers: readonly Res[]): void {
  const problems: string[] = [];
  cases.forEach((c, i) => {
    const a = answers[i];
    const name = `${c.req.method ?? "GET"} ${c.req.host ?? ""}${c.req.path} ${JSON.stringify(c.req.headers ?? {})}`;
    const why = a ? check(c, a) : "no answer";
    if (why) problems.push(`${name}: ${why}`);
  });
  assert.deepEqual(problems, []);
}

function check(c: Case, a: Res): string | undefined {
  const w = c.want;
  const status = w.status ?? 200;
  if (a.status !== status) return `status ${a.status}${a.error ? ` (${a.error})` : ""}, want ${status}`;
  const rh = lower(a.headers ?? {});
  for (const [k, v] of Object.entries(w.responseHeaders ?? {}))
    if (rh[k.toLowerCase()] !== v) return `response ${k}: ${rh[k.toLowerCase()]}, want ${v}`;
  for (const k of w.responseAbsent ?? [])
    if (rh[k.toLowerCase()] !== undefined) return `response ${k} present: ${rh[k.toLowerCase()]}`;
  if (status === 200) {
    const s = a.seen;
    if (!s) return `not an echo answer: ${a.body.slice(0, 100)}`;
    if (w.backend !== undefined && !s.pod.startsWith(w.backend)) return `pod ${s.pod}, want ${w.backend}-*`;
    if (s.namespace !== (w.namespace ?? INFRA)) return `namespace ${s.namespace}`;
    if (s.path !== (w.path ?? c.req.path)) return `backend saw path ${s.path}, want ${w.path ?? c.req.path}`;
    if (w.host !== undefined && s.host !== w.host) return `backend saw host ${s.host}, want ${w.host}`;
    if (s.method !== (w.method ?? c.req.method ?? "GET")) return `backend saw method ${s.method}`;
    const sh = lower(s.headers);
    for (const [k, v] of Object.entries(w.headers ?? {}))
      if (sh[k.toLowerCase()] !== v) return `backend saw ${k}: ${sh[k.toLowerCase()]}, want ${v}`;
    for (const k of w.absent ?? [])
      if (sh[k.toLowerCase()] !== undefined) return `backend saw ${k}: ${sh[k.toLowerCase()]}`;
  }
  if (status >= 300 && status < 400 && w.redirect) {
    const loc = rh["location"];
    if (!loc) return "no Location";
    const u = new URL(loc);
    const scheme = u.protocol.slice(0, -1);
    const want = w.redirect;
    if (scheme !== (want.scheme ?? (c.req.tls ? "https" : "http"))) return `Location ${loc}: scheme`;
    if (want.host !== undefined && u.hostname !== want.host) return `Location ${loc}: host`;
    if (want.port === undefined && u.port !== "" && !(scheme === "http" ? ["80"] : ["443"]).includes(u.port))
      return `Location ${loc}: port ${u.port}, want the scheme's default`;
    if (want.port !== undefined && u.port !== want.port) return `Location ${loc}: port, want ${want.port}`;
    if (u.pathname !== (want.path ?? c.req.path.split("?")[0])) return `Location ${loc}: path`;
  }
  return undefined;
}

/** `type=status/reason` of a condition, or "absent". */
export function cond(cs: readonly Condition[] | undefined, type: string): string {
  const c = cs?.find((x) => x.type === type);
  return c ? `${c.status}/${c.reason}` : "absent";
}

/** Backend shorthand: a 200 from that infra Service's pod. */
export const to = (backend: string, more: Omit<Expect, "backend"> = {}): Expect => ({ backend, ...more });
