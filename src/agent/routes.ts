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
 *   DELETE /v1/endpoints/:namespace/:name?gracePeriodSeconds=N   stops its processes, then deletes it
 *   PUT    /v1/namespaces/:name {labels}
 *   PUT    /v1/services/:namespace/:name {selector?, labels?, ports, ips?}   for toServices
 *   PUT    /v1/remote-endpoints {endpoints: [{ip, namespace, labels?, serviceAccount?}]}   other nodes' endpoints, in bulk
 *   DELETE /v1/remote-endpoints {ips: [...]}
 *   GET    /v1/remote-endpoints
 *   GET    /v1/identities
 *   GET    /v1/ipcache
 *   GET    /v1/datapath/diff                  desired state against what the kernel holds
 *   POST   /v1/flows           ObserveRequest  flows from the ring (one JSON array)
 *   POST   /v1/flows/follow    ObserveRequest  the backlog, then new flows (NDJSON stream)
 *   GET    /v1/flows/status                   ring counters (written, lost, ...)
 *   POST   /v1/runtime/events[/follow], GET /v1/runtime/status   runtime events (api/runtime-routes.ts)
 *   POST   /v1/why             ObserveRequest  explain the latest matching drop, propose a fix
 *   POST|DELETE|GET /v1/tracingpolicies           TracingPolicy (api/tracing-routes.ts)
 *   POST|DELETE /v1/lb/resources, GET /v1/lb/services   Service, EndpointSlice (api/lb-routes.ts)
 *
 * Request bodies are checked here, field by field, before anything runs
 * (api/body.ts): a malformed one is a 400 naming the field, never a 500.
 */
import { MembraneError } from "../errors.js";
import type { Agent } from "./agent.js";
import type { ApiRequest, Route } from "./api/router.js";
import {
  badField,
  fields,
  item,
  kindOf,
  list,
  optionalBoolean,
  string,
  stringMap,
  type Body,
} from "./api/body.js";

/** The body of POST and DELETE /v1/policies. */
const POLICY_FILE = { text: "required", file: "required" } as const;
import type { NamedPort } from "../policy/query.js";
import { warningText, type PolicyWarning } from "../policy/api/index.js";
import { PolicyChecker } from "./policy-check.js";
import { remoteEndpointRoutes } from "./remote-endpoint-routes.js";
import { cniRoutes } from "./api/cni-routes.js";
import { lbRoutes } from "./api/lb-routes.js";
import { tracingRoutes } from "./api/tracing-routes.js";
import { gatewayRoutes } from "./api/gateway-routes.js";
import { runtimeRoutes } from "./api/runtime-routes.js";
import { authRoutes } from "./api/auth-routes.js";
import { clusterRoutes, withClusterStatus } from "./api/cluster-routes.js";
import type { PolicyResource } from "../policy/types.js";
import { flowRoutes } from "./api/flow-routes.js";

export { checkFilterShape, flowQuery } from "./api/flow-routes.js";

/** In cluster mode, the etcd revision `--wait` waits for (GET /v1/cluster/realized): as an apply's report. */
function toWait(agent: Agent): { clusterRevision?: number } {
  return agent.cluster ? { clusterRevision: agent.cluster.revisionToWait() } : {};
}

/** `ports: [{name, port, protocol?}]`, types checked here; the agent checks the values. */
function ports(req: ApiRequest, b: Body): NamedPort[] {
  return list(req, b, "ports", 64).map((v, i) => {
    const path = `ports[${i}]`;
    const p = item(req, path, v, { name: "required", port: "required", protocol: "optional" });
    if (typeof p["name"] !== "string")
      throw badField(req, `${path}.name`, `must be a string, not ${kindOf(p["name"])}`);
    if (typeof p["port"] !== "number")
      throw badField(req, `${path}.port`, `must be a number, not ${kindOf(p["port"])}`);
    const protocol = p["protocol"] ?? "TCP";
    if (typeof protocol !== "string")
      throw badField(req, `${path}.protocol`, `must be a string, not ${kindOf(protocol)}`);
    return { name: p["name"], port: p["port"], protocol: protocol as NamedPort["protocol"] };
  });
}

export function agentRoutes(agent: Agent): Route[] {
  // Policy text is parsed off the event loop first (policy-check.ts): a hostile file never blocks the API.
  const checker = new PolicyChecker();
  checker.warm(); // the parser loaded before the first apply (idle work: nothing waits for it)
  const checked = async (
    req: ApiRequest,
  ): Promise<{ resources: PolicyResource[]; warnings: PolicyWarning[]; file: string }> => {
    const b = fields(req, POLICY_FILE);
    const text = string(req, b, "text", 1 << 23);
    const file = string(req, b, "file", 4096);
    return { ...(await checker.parse(text, file, agent.engine.config.meshAuth === true)), file };
  };
  // The parser's warnings (as kubectl shows the API server's): in the answer when there are any.
  const withWarnings = <T extends object>(r: T, warnings: readonly PolicyWarning[]): T =>
    warnings.length === 0 ? r : { ...r, warnings: warnings.map(warningText) };
  return [
    { method: "GET", path: "/v1/status", handler: () => withClusterStatus(agent.status(), agent.cluster) },
    {
      method: "POST",
      path: "/v1/policies",
      handler: async (req) => {
        const { resources, warnings, file } = await checked(req);
        return withWarnings(await agent.applyPolicyResources(resources, file, req.signal), warnings);
      },
    },
    {
      method: "DELETE",
      path: "/v1/policies",
      handler: async (req) => {
        const { resources, file } = await checked(req);
        return agent.deletePolicyRefs(
          resources.map((r) => r.ref),
          file,
          req.signal,
        );
      },
    },
    { method: "GET", path: "/v1/policies", handler: () => agent.listPolicies() },
    { method: "GET", path: "/v1/endpoints", handler: () => agent.listEndpoints() },
    {
      method: "POST",
      path: "/v1/endpoints",
      status: 201,
      handler: (req) => {
        const b = fields(req, {
          name: "required",
          namespace: "required",
          labels: "optional",
          ports: "optional",
        });
        return agent.createEndpointRequest({
          name: string(req, b, "name", 63),
          namespace: string(req, b, "namespace", 63),
          labels: stringMap(req, b, "labels"),
          ...(b["ports"] !== undefined ? { ports: ports(req, b) } : {}),
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
        const b = fields(req, { labels: "required", replace: "optional" });
        const labels = stringMap(req, b, "labels");
        const replace = optionalBoolean(req, b, "replace") === true;
        return agent.labelEndpoint(req.params["namespace"] ?? "", req.params["name"] ?? "", labels, replace);
      },
    },
    {
      method: "DELETE",
      path: "/v1/endpoints/:namespace/:name",
      handler: async (req) => {
        const grace = req.query.get("gracePeriodSeconds") ?? "0";
        if (!/^\d{1,3}$/.test(grace) || Number(grace) > 300) {
          throw new MembraneError(
            "API_REQUEST_INVALID",
            `Cannot delete the endpoint: gracePeriodSeconds "${grace.slice(0, 20)}" is not 0-300`,
            { location: { path: "gracePeriodSeconds" } },
          );
        }
        const { stopped } = await agent.deleteEndpointRequest(
          req.params["namespace"] ?? "",
          req.params["name"] ?? "",
          Number(grace) * 1000,
        );
        return { deleted: `${req.params["namespace"]}/${req.params["name"]}`, stopped };
      },
    },
    {
      method: "PUT",
      path: "/v1/namespaces/:name",
      handler: async (req) => {
        const labels = stringMap(req, fields(req, { labels: "required" }), "labels");
        await agent.setNamespaceLabels(req.params["name"] ?? "", labels);
        return { namespace: req.params["name"], ...toWait(agent) };
      },
    },
    {
      method: "PUT",
      path: "/v1/services/:namespace/:name",
      handler: async (req) => {
        const b = fields(req, {
          ports: "required",
          selector: "optional",
          labels: "optional",
          ips: "optional",
        });
        const svcPorts = list(req, b, "ports", 1024).map((v, i) => {
          const o = item(req, `ports[${i}]`, v, { port: "required", protocol: "optional" });
          const protocol = o["protocol"] ?? "TCP";
          if (typeof protocol !== "string" || !["TCP", "UDP", "SCTP"].includes(protocol))
            throw badField(req, `ports[${i}].protocol`, "must be TCP, UDP or SCTP");
          if (!Number.isInteger(o["port"]))
            throw badField(req, `ports[${i}].port`, `must be a whole number, not ${kindOf(o["port"])}`);
          return { port: o["port"] as number, protocol: protocol as "TCP" | "UDP" | "SCTP" };
        });
        const ips = list(req, b, "ips", 1024).map((ip, i) => {
          if (typeof ip !== "string") throw badField(req, `ips[${i}]`, `must be a string, not ${kindOf(ip)}`);
          return ip;
        });
        const namespace = req.params["namespace"] ?? "";
        const name = req.params["name"] ?? "";
        await agent.upsertService({
          name,
          namespace,
          ports: svcPorts,
          ...(b["selector"] !== undefined ? { selector: stringMap(req, b, "selector") } : {}),
          ...(b["labels"] !== undefined ? { labels: stringMap(req, b, "labels") } : {}),
          ...(b["ips"] !== undefined ? { ips } : {}),
        });
        return { service: `${namespace}/${name}`, ...toWait(agent) };
      },
    },
    ...remoteEndpointRoutes(agent.remoteEndpoints),
    ...cniRoutes(agent.cni), // membrane-cni: /v1/cni/... (api/cni-routes.ts)
    ...lbRoutes(
      () => agent.lb,
      () => agent.cluster,
    ), // Service / EndpointSlice in the kernel (api/lb-routes.ts)
    ...tracingRoutes(() => agent.tracing), // TracingPolicy: /v1/tracingpolicies (api/tracing-routes.ts)
    ...runtimeRoutes(() => agent.runtime), // /v1/runtime/... (api/runtime-routes.ts)
    ...authRoutes(() => agent.spiffe?.auth), // /v1/auth/... mutual authentication (api/auth-routes.ts)
    ...clusterRoutes(() => agent.cluster), // /v1/cluster/realized (api/cluster-routes.ts)
    ...gatewayRoutes(() => agent.gateways), // Gateway API, Ingress: /v1/gateway (api/gateway-routes.ts)
    { method: "GET", path: "/v1/identities", handler: () => agent.identities() },
    { method: "GET", path: "/v1/ipcache", handler: () => agent.ipcache() },
    { method: "GET", path: "/v1/datapath/diff", handler: async () => ({ diff: await agent.datapathDiff() }) },
    // Flows, why, impact (api/flow-routes.ts).
    ...flowRoutes(agent, (text, file) => checker.parse(text, file, agent.engine.config.meshAuth === true)),
  ];
}
