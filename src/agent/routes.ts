/**
 * The agent's REST API (over the root-only unix socket).
 *
 *   GET    /v1/status                         agent, revision, last kernel apply
 *   POST   /v1/policies        {text, file}   apply a policy file (validated whole first)
 *   DELETE /v1/policies        {text, file}   delete the policies a file names
 *   GET    /v1/policies
 *   GET    /v1/endpoints
 *   POST   /v1/endpoints       {name, namespace, labels}
 *   GET    /v1/endpoints/:namespace/:name
 *   PATCH  /v1/endpoints/:namespace/:name/labels {labels, replace?}
 *   DELETE /v1/endpoints/:namespace/:name
 *   PUT    /v1/namespaces/:name {labels}
 *   PUT    /v1/services/:namespace/:name {selector?, labels?, ports, ips?}   for toServices
 *   GET    /v1/identities
 *   GET    /v1/ipcache
 *   GET    /v1/datapath/diff                  desired state against what the kernel holds
 *   POST   /v1/flows           ObserveRequest  flows from the ring (one JSON array)
 *   POST   /v1/flows/follow    ObserveRequest  the backlog, then new flows (NDJSON stream)
 *   GET    /v1/flows/status                   ring counters (written, lost, ...)
 *   POST   /v1/why             ObserveRequest  explain the latest matching drop, propose a fix
 *
 * Request bodies are checked here, field by field, before anything runs.
 */
import { MembraneError } from "../errors.js";
import type { Agent } from "./agent.js";
import type { ApiRequest, Route } from "./api/router.js";
import { FLOW_FILTER_FIELDS, isFlowRecord, type Flow, type ObserveRequest } from "../observe/index.js";
import type { FlowQuery, NamedPort, PeerRef } from "../policy/query.js";
import { explainDrop } from "../policy/why.js";
import { PolicyChecker } from "./policy-check.js";

function obj(req: ApiRequest): Record<string, unknown> {
  const b = req.body;
  if (typeof b !== "object" || b === null || Array.isArray(b)) {
    throw new MembraneError(
      "API_FAILED",
      `Cannot handle ${req.method} ${req.path}: the body must be a JSON object`,
    );
  }
  return b as Record<string, unknown>;
}

function str(b: Record<string, unknown>, field: string, max = 1 << 23): string {
  const v = b[field];
  if (typeof v !== "string" || v.length > max) {
    throw new MembraneError("API_FAILED", `Cannot handle the request: field "${field}" must be a string`, {
      location: { path: field },
    });
  }
  return v;
}

function labels(b: Record<string, unknown>, field: string): Record<string, string> {
  const v = b[field] ?? {};
  if (
    typeof v !== "object" ||
    v === null ||
    Array.isArray(v) ||
    Object.values(v).some((x) => typeof x !== "string")
  ) {
    throw new MembraneError(
      "API_FAILED",
      `Cannot handle the request: field "${field}" must map label keys to string values`,
      {
        location: { path: field },
      },
    );
  }
  return { ...(v as Record<string, string>) };
}

/** The body of a flows request: the filter the CLI compiled from its flags (checked when compiled). */
function observeRequest(req: ApiRequest): ObserveRequest {
  const b = obj(req);
  const num = (k: string): number | undefined => {
    const v = b[k];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new MembraneError(
        "API_FAILED",
        `Cannot read the flows request: "${k}" must be a non-negative number`,
      );
    }
    return v;
  };
  const filter = b["filter"] ?? {};
  checkFilterShape(filter);
  const number = num("number");
  const since = num("since");
  const until = num("until");
  return {
    filter: filter as ObserveRequest["filter"],
    follow: b["follow"] === true,
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
    new MembraneError("API_FAILED", `Cannot read the flows request: ${path} ${why}`, { location: { path } });
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

/** `ports: [{name, port, protocol}]`, shape-checked here; the agent checks the values. */
function ports(v: unknown): NamedPort[] {
  if (!Array.isArray(v) || v.length > 64 || v.some((p) => typeof p !== "object" || p === null)) {
    throw new MembraneError(
      "API_FAILED",
      'Cannot handle the request: "ports" must be a list of {name, port, protocol}',
      {
        location: { path: "ports" },
      },
    );
  }
  return (v as Record<string, unknown>[]).map((p) => ({
    name: String(p["name"]),
    port: Number(p["port"]),
    protocol: String(p["protocol"] ?? "TCP") as NamedPort["protocol"],
  }));
}

export function agentRoutes(agent: Agent): Route[] {
  // Policy text is parsed off the event loop first (policy-check.ts): a hostile file never blocks the API.
  const checker = new PolicyChecker();
  const checked = async (req: ApiRequest): Promise<{ text: string; file: string }> => {
    const b = obj(req);
    const text = str(b, "text");
    const file = str(b, "file", 4096);
    await checker.check(text, file, agent.engine.config.meshAuth === true);
    return { text, file };
  };
  return [
    { method: "GET", path: "/v1/status", handler: () => agent.status() },
    {
      method: "POST",
      path: "/v1/policies",
      handler: async (req) => {
        const { text, file } = await checked(req);
        return agent.applyPolicies(text, file);
      },
    },
    {
      method: "DELETE",
      path: "/v1/policies",
      handler: async (req) => {
        const { text, file } = await checked(req);
        return agent.deletePolicies(text, file);
      },
    },
    { method: "GET", path: "/v1/policies", handler: () => agent.listPolicies() },
    { method: "GET", path: "/v1/endpoints", handler: () => agent.listEndpoints() },
    {
      method: "POST",
      path: "/v1/endpoints",
      status: 201,
      handler: (req) => {
        const b = obj(req);
        return agent.createEndpointRequest({
          name: str(b, "name", 63),
          namespace: str(b, "namespace", 63),
          labels: labels(b, "labels"),
          ...(b["ports"] !== undefined ? { ports: ports(b["ports"]) } : {}),
        });
      },
    },
    {
      method: "GET",
      path: "/v1/endpoints/:namespace/:name",
      handler: (req) => agent.getEndpoint(req.params["namespace"] ?? "", req.params["name"] ?? ""),
    },
    {
      method: "PATCH",
      path: "/v1/endpoints/:namespace/:name/labels",
      handler: (req) => {
        const b = obj(req);
        return agent.labelEndpoint(
          req.params["namespace"] ?? "",
          req.params["name"] ?? "",
          labels(b, "labels"),
          b["replace"] === true,
        );
      },
    },
    {
      method: "DELETE",
      path: "/v1/endpoints/:namespace/:name",
      handler: async (req) => {
        await agent.deleteEndpointRequest(req.params["namespace"] ?? "", req.params["name"] ?? "");
        return { deleted: `${req.params["namespace"]}/${req.params["name"]}` };
      },
    },
    {
      method: "PUT",
      path: "/v1/namespaces/:name",
      handler: async (req) => {
        await agent.setNamespaceLabels(req.params["name"] ?? "", labels(obj(req), "labels"));
        return { namespace: req.params["name"] };
      },
    },
    {
      method: "PUT",
      path: "/v1/services/:namespace/:name",
      handler: async (req) => {
        const b = obj(req);
        const list = (k: string): unknown[] => {
          const v = b[k] ?? [];
          if (!Array.isArray(v) || v.length > 1024) {
            throw new MembraneError("API_FAILED", `Cannot handle the request: "${k}" must be a list`, {
              location: { path: k },
            });
          }
          return v;
        };
        const svcPorts = list("ports").map((p) => {
          const o = (typeof p === "object" && p !== null ? p : {}) as Record<string, unknown>;
          const protocol = String(o["protocol"] ?? "TCP");
          if (!["TCP", "UDP", "SCTP"].includes(protocol) || !Number.isInteger(o["port"])) {
            throw new MembraneError(
              "API_FAILED",
              "Cannot handle the request: ports are {port, protocol: TCP|UDP|SCTP}",
              {
                location: { path: "ports" },
              },
            );
          }
          return { port: o["port"] as number, protocol: protocol as "TCP" | "UDP" | "SCTP" };
        });
        const namespace = req.params["namespace"] ?? "";
        const name = req.params["name"] ?? "";
        await agent.upsertService({
          name,
          namespace,
          ports: svcPorts,
          ...(b["selector"] !== undefined ? { selector: labels(b, "selector") } : {}),
          ...(b["labels"] !== undefined ? { labels: labels(b, "labels") } : {}),
          ...(b["ips"] !== undefined ? { ips: list("ips").map(String) } : {}),
        });
        return { service: `${namespace}/${name}` };
      },
    },
    { method: "GET", path: "/v1/identities", handler: () => agent.identities() },
    { method: "GET", path: "/v1/ipcache", handler: () => agent.ipcache() },
    { method: "GET", path: "/v1/datapath/diff", handler: async () => ({ diff: await agent.datapathDiff() }) },
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
      handler: async (req, send) => {
        const o = observerOf(agent);
        const r = observeRequest(req);
        for await (const rec of o.follow(r, req.signal)) {
          if (!(await send(rec))) break;
        }
      },
    },
  ];
}

/** Adds verdict DROPPED to every allow filter (or makes one). */
function withVerdict(
  list: ObserveRequest["filter"]["allowlist"],
): NonNullable<ObserveRequest["filter"]["allowlist"]> {
  const base = list && list.length > 0 ? list : [{}];
  return base.map((f) => ({ ...f, verdict: ["DROPPED"] }));
}
