/**
 * Membrane's gateway (src/gateway: GatewayServer with a RouteTable compiled
 * from Gateway API YAML) in a process of its own, as the gateway benchmark's
 * system under test, with the node flags the proxy runs with.
 *
 *   node dist/bench/gateway-server.js <upstreamPort> <listenPort>
 *   -> IPC message {port} once the listener is served on 127.0.0.1
 *
 * The routes (ROUTES, and nginx's equivalent in gateway.ts): host `svc`,
 * PathPrefix /api to the upstream with a request header added, /static and
 * a header-matched rule as decoys the matcher has to pass over. Events go to
 * a sink that drops them (in the agent they go to the flow observer).
 */
import { compileGateways } from "../src/gateway/compile.js";
import { parseGatewayResources } from "../src/gateway/parse.js";
import { GatewayServer } from "../src/gateway/server.js";
import { benchArgs, forkedOnly } from "./cli.js";

export function routesYaml(listenPort: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: membrane}
spec: {controllerName: membrane.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: membrane
  listeners: [{name: http, port: ${listenPort}, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  hostnames: [svc]
  rules:
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: nothere, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: nothere, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-gateway, value: membrane}]}}
    backendRefs: [{name: up, port: 80}]
`;
}

async function main(upstreamPort: number, listenPort: number): Promise<void> {
  const services: Record<string, string[]> = { "bench/up": ["127.0.0.1"] };
  const { table } = compileGateways({
    resources: parseGatewayResources(routesYaml(listenPort), "bench.yaml"),
    hasService: (ns, name) => services[`${ns}/${name}`] !== undefined,
    namespaceLabels: () => ({}),
    certificateProblem: () => "no certificates in the bench",
    servicePort: (ns, name) => (name === "up" ? { targetPort: upstreamPort } : undefined),
    addresses: ["127.0.0.1"],
    now: new Date().toISOString(),
  });
  const server = new GatewayServer({
    endpoints: (ns, name) => services[`${ns}/${name}`] ?? [],
    keyPair: () => undefined,
    onEvent: () => undefined,
  });
  await server.update(table);
  process.send?.({ port: listenPort });
  process.on("disconnect", () => void server.stop().then(() => process.exit(0)));
}

if (process.argv[1]?.endsWith("/gateway-server.js")) {
  const { args } = benchArgs({
    script: "gateway-server",
    measures: "Not a benchmark of its own: the gateway benchmark's system under test (gateway.js forks it with an IPC channel). Serves the bench's routes on 127.0.0.1:<listenPort> to the upstream and sends {port} once it listens.", // prettier-ignore
    root: false,
    args: { usage: "<upstreamPort> <listenPort>", help: "the upstream's port and the port to serve", min: 2, max: 2, check: (a) => (a.every((p) => /^\d+$/.test(p) && Number(p) >= 0 && Number(p) <= 65535) ? undefined : `${a.join(" ")}: give two port numbers (0-65535)`) }, // prettier-ignore
    flags: {},
  });
  forkedOnly("gateway-server.js", "gateway.js");
  void main(Number(args[0]), Number(args[1]));
}
