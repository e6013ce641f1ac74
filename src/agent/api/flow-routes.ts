/**
 * The flow routes of the agent's API: reading and following flows, "why was
 * this dropped?" and "what would this change break?".
 *
 *   POST /v1/flows          the ring, filtered (the CLI compiled the filter from its flags)
 *   GET  /v1/flows/status   the ring's counters
 *   POST /v1/flows/follow   a stream of flows as they come
 *   POST /v1/why            the last matching drop, explained, with a verified proposal
 *   POST /v1/impact         {text, file, delete?, number?, since?, filter?}: the connections the
 *                           ring saw, judged now and after applying (or deleting) the file's
 *                           policies on a copy of the policy state (policy/impact.ts); nothing applied
 */
import { MembraneError } from "../../errors.js";
import type { Agent } from "../agent.js";
import type { ApiRequest, Route } from "./router.js";
import { badField, fields, kindOf, optionalBoolean, string } from "./body.js";
import { FLOW_FILTER_FIELDS, isFlowRecord, type Flow, type ObserveRequest } from "../../observe/index.js";
import type { FlowQuery, PeerRef } from "../../policy/query.js";
import type { PolicyResource } from "../../policy/types.js";
import { explainDrop } from "../../policy/why.js";
import { impactOf, type ImpactReport, type ObservedConnection } from "../../policy/impact.js";

/** Parses a policy file (the agent's worker-thread checker). */
export type ParsePolicies = (text: string, file: string) => Promise<{ resources: PolicyResource[] }>;

/** The body of a flows request: the filter the CLI compiled from its flags (checked when compiled). */
function observeRequest(req: ApiRequest): ObserveRequest {
  return observeBody(
    req,
    fields(req, {
      filter: "optional",
      follow: "optional",
      number: "optional",
      since: "optional",
      until: "optional",
    }),
  );
}

function observeBody(req: ApiRequest, b: Record<string, unknown>): ObserveRequest {
  const num = (k: string): number | undefined => {
    const v = b[k];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
      throw badField(req, k, `must be a non-negative number, not ${kindOf(v)}`);
    return v;
  };
  const filter = b["filter"] ?? {};
  checkFilterShape(filter);
  const number = num("number");
  const since = num("since");
  const until = num("until");
  return {
    filter: filter as ObserveRequest["filter"],
    follow: optionalBoolean(req, b, "follow") === true,
    ...(number !== undefined ? { number } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
  };
}

/**
 * The shape of a FlowFilterSet from the wire: `{allowlist?, denylist?}` of
 * filters whose every field is a short list of strings, numbers or booleans
 * (`event_type`: of `{type, sub_type?}`). compileFilter then checks the values.
 */
export function checkFilterShape(v: unknown): void {
  const bad = (path: string, why: string): MembraneError =>
    new MembraneError("API_REQUEST_INVALID", `Cannot read the flows request: ${path} ${why}`, {
      location: { path },
    });
  const isObj = (x: unknown): x is Record<string, unknown> =>
    typeof x === "object" && x !== null && !Array.isArray(x);
  if (!isObj(v)) throw bad("filter", "must be an object");
  for (const [k, list] of Object.entries(v)) {
    if (k !== "allowlist" && k !== "denylist") throw bad(`filter.${k}`, "is not allowlist or denylist");
    if (!Array.isArray(list) || list.length > 64)
      throw bad(`filter.${k}`, "must be a list of at most 64 filters");
    list.forEach((f, i) => {
      if (!isObj(f)) throw bad(`filter.${k}[${i}]`, "must be an object");
      for (const [field, vals] of Object.entries(f)) {
        const path = `filter.${k}[${i}].${field}`;
        if (!(FLOW_FILTER_FIELDS as readonly string[]).includes(field))
          throw bad(path, "is not a flow filter field");
        if (!Array.isArray(vals) || vals.length > 256)
          throw bad(path, "must be a list of at most 256 values");
        for (const x of vals) {
          const ok =
            field === "event_type"
              ? isObj(x) && typeof x["type"] === "number"
              : (typeof x === "string" && x.length <= 1024) ||
                typeof x === "number" ||
                typeof x === "boolean";
          if (!ok)
            throw bad(
              path,
              field === "event_type"
                ? "values must be {type, sub_type?}"
                : "values must be strings, numbers or booleans",
            );
        }
      }
    });
  }
}

function observerOf(agent: Agent) {
  const o = agent.observer;
  if (!o) {
    throw new MembraneError("API_FAILED", "Cannot show flows: flow visibility is off on this agent", {
      hint: "start the agent without --no-flows",
    });
  }
  return o;
}

/** The connection a flow stands for, as the policy core asks it. */
export function flowQuery(f: Flow): FlowQuery | undefined {
  const peer = (e: Flow["source"], ip: string | undefined): PeerRef | undefined =>
    e?.pod_name
      ? { kind: "endpoint", name: e.pod_name, namespace: e.namespace ?? "default" }
      : ip
        ? { kind: "ip", ip }
        : undefined;
  const from = peer(f.source, f.IP?.source);
  const to = peer(f.destination, f.IP?.destination);
  const l4 = f.l4;
  if (!from || !to || !l4) return undefined;
  const http = f.l7?.http;
  if ("TCP" in l4 && http?.method !== undefined && http.url !== undefined) {
    // An L7 flow of the proxy: the request it judged (URL as the proxy normalised it).
    const url = URL.canParse(http.url) ? new URL(http.url) : undefined;
    if (url) {
      const req = { method: http.method, path: url.pathname + url.search, host: url.host };
      return { from, to, proto: "TCP", port: l4.TCP.destination_port, http: req };
    }
  }
  if ("TCP" in l4) return { from, to, proto: "TCP", port: l4.TCP.destination_port };
  if ("UDP" in l4) return { from, to, proto: "UDP", port: l4.UDP.destination_port };
  if ("SCTP" in l4) return { from, to, proto: "SCTP", port: l4.SCTP.destination_port };
  if ("ICMPv4" in l4) return { from, to, proto: "ICMP", icmpType: l4.ICMPv4.type };
  return { from, to, proto: "ICMPv6", icmpType: l4.ICMPv6.type };
}

export function flowRoutes(agent: Agent, parse: ParsePolicies): Route[] {
  return [
    { method: "POST", path: "/v1/flows", handler: (req) => observerOf(agent).read(observeRequest(req)) },
    { method: "GET", path: "/v1/flows/status", handler: () => observerOf(agent).ring.stats() },
    {
      method: "POST",
      path: "/v1/why",
      handler: (req) => {
        const r = observeRequest(req);
        const drops = observerOf(agent)
          .read({ ...r, number: 1, filter: { ...r.filter, allowlist: withVerdict(r.filter.allowlist) } })
          .filter(isFlowRecord);
        const flow = drops[drops.length - 1]?.flow;
        if (!flow) {
          throw new MembraneError("API_FAILED", "Cannot explain a drop: no recent dropped flow matches", {
            hint: "`membrane observe --verdict DROPPED` lists recent drops; loosen the filter",
          });
        }
        const q = flowQuery(flow);
        if (!q)
          throw new MembraneError(
            "API_FAILED",
            "Cannot explain that drop: the flow has no addresses or ports",
          );
        return { flow, query: q, ...explainDrop(agent.engine, q) };
      },
    },
    {
      kind: "stream",
      method: "POST",
      path: "/v1/flows/follow",
      check: (req) => void observeRequest(req),
      handler: async (req, send) => {
        const o = observerOf(agent);
        const r = observeRequest(req);
        for await (const rec of o.follow(r, req.signal)) {
          if (!(await send(rec))) break;
        }
      },
    },
    {
      method: "POST",
      path: "/v1/impact",
      handler: async (req) => {
        const b = fields(req, {
          text: "required",
          file: "required",
          delete: "optional",
          filter: "optional",
          number: "optional",
          since: "optional",
        });
        const text = string(req, b, "text", 1 << 23);
        const file = string(req, b, "file", 4096);
        const remove = optionalBoolean(req, b, "delete") === true;
        const r = observeBody(req, { filter: b["filter"], number: b["number"], since: b["since"] });
        const o = observerOf(agent);
        const { resources } = await parse(text, file);
        const after = agent.engine.fork();
        for (const res of resources) {
          if (remove) after.deletePolicy(res.ref);
          else after.upsertPolicy(res);
        }
        return impactReport(agent, after, o.read({ ...r, follow: false }));
      },
    },
  ];
}

/** The connections of the flows read: requests and first packets only (a reply is not a connection). */
function impactReport(
  agent: Agent,
  after: ReturnType<Agent["engine"]["fork"]>,
  records: ReturnType<ReturnType<typeof observerOf>["read"]>,
): ImpactReport & { readonly flowsRead: number } {
  const seen: ObservedConnection[] = [];
  let read = 0;
  for (const rec of records) {
    if (!isFlowRecord(rec)) continue;
    read++;
    const f = rec.flow;
    if (f.is_reply === true) continue;
    const q = flowQuery(f);
    if (q) seen.push({ query: q, flows: 1, ...(typeof f.time === "string" ? { lastSeen: f.time } : {}) });
  }
  return { ...impactOf(agent.engine, after, seen), flowsRead: read };
}

/** Adds verdict DROPPED to every allow filter (or makes one). */
function withVerdict(
  list: ObserveRequest["filter"]["allowlist"],
): NonNullable<ObserveRequest["filter"]["allowlist"]> {
  const base = list && list.length > 0 ? list : [{}];
  return base.map((f) => ({ ...f, verdict: ["DROPPED"] }));
}
