/** Helpers for the gateway tests: YAML in, compiled table and status out. */
import { compileGateways, type CompiledGateways } from "../../src/gateway/compile.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayRequest } from "../../src/gateway/match.js";

export const CLASS = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: membrane}
spec: {controllerName: membrane.io/gateway-controller}
`;

/** A Gateway `gw` in `infra` with one HTTP listener per entry (name, port, hostname?). */
export function gateway(listeners: string, extra = ""): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: membrane
  listeners:
${listeners}
${extra}`;
}

/**
 * A Gateway of class membrane (CLASS), each listener one flow-style map, as a document of a
 * multi-document file (it starts with `---`). `namespace`: infra unless said; `spec`: more lines
 * of its spec (e.g. `addresses: [...]`).
 */
export function gatewayYaml(
  name: string,
  listeners: readonly string[],
  o: { readonly namespace?: string; readonly spec?: readonly string[] } = {},
): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: ${o.namespace ?? "infra"}}
spec:
  gatewayClassName: membrane
${(o.spec ?? []).map((l) => `  ${l}\n`).join("")}  listeners:
${listeners.map((l) => `  - ${l}`).join("\n")}
`;
}

export const HTTP_ALL = `  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}`;

export interface WorldOpts {
  services?: string[];
  certProblem?: (ns: string, name: string) => string | undefined;
  nsLabels?: Record<string, Record<string, string>>;
}

export function compileYaml(text: string, o: WorldOpts = {}): CompiledGateways {
  const services = new Set(o.services ?? ["infra/v1", "infra/v2", "infra/v3", "app/web"]);
  return compileGateways({
    resources: parseGatewayResources(text, "test.yaml"),
    hasService: (ns, name) => services.has(`${ns}/${name}`),
    namespaceLabels: (ns) => o.nsLabels?.[ns] ?? {},
    certificateProblem: o.certProblem ?? (() => undefined),
    addresses: ["10.0.0.1"],
    now: "2026-01-01T00:00:00Z",
  });
}

export function req(
  target: string,
  host = "example.com",
  headers: Record<string, string> = {},
  method = "GET",
): GatewayRequest {
  return {
    method,
    target,
    host,
    headers: [
      { name: "Host", value: host },
      ...Object.entries(headers).map(([name, value]) => ({ name, value })),
    ],
  };
}

/** A route `name` in `infra` on gw with the given spec body (indented 2). */
export function route(name: string, body: string, ns = "infra", created?: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${ns}${created ? `, creationTimestamp: "${created}"` : ""}}
spec:
  parentRefs: [{name: gw, namespace: infra}]
${body}
`;
}
