/**
 * The agent's gateway (root): `--gateway` puts the gateway in its own
 * namespace whose address has the reserved `ingress` identity; an outside
 * namespace reaches two weighted backend endpoints through an HTTPRoute, the
 * backends' ingress policy judges the gateway's connections as `ingress`
 * (fromEntities: [ingress] admits; a policy without it denies), an Ingress
 * of class membrane routes too, and statuses are shown.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { grpcCalls, startGrpcServer } from "./grpc-lab.js";
import { httpGet, killGroup, startEcho } from "./netns-lab.js";

const skip = rootSkipReason() ?? false;

const GATEWAY = `${CLASS}${gatewayYaml("web", ["{name: http, port: 8000, protocol: HTTP}"], { namespace: "default" })}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v1, port: 8080, weight: 50}, {name: v2, port: 8080, weight: 50}]
  - matches: [{path: {type: PathPrefix, value: /gone}}]
    backendRefs: [{name: nothere, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: default}
spec:
  ingressClassName: membrane
  rules:
  - host: shop.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: v2, port: {number: 8080}}}}]}
`;

/** A v1 Service whose port speaks h2c, and a GRPCRoute to it on the same Gateway. */
const GRPC = `apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: grpc, port: 9090, appProtocol: kubernetes.io/h2c}]
`;
const GRPC_ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules: [{backendRefs: [{name: grpc, port: 9090}]}]
`;

const ALLOW_INGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [ingress]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

const ONLY_CLIENTS = ALLOW_INGRESS.replace(
  "fromEntities: [ingress]",
  "fromEndpoints: [{matchLabels: {app: client}}]",
);

describe("agent gateway (root)", { skip }, () => {
  let lab: AgentLab;
  let out: string;
  let url: string;
  const echoes: ChildProcess[] = [];

  before(async () => {
    lab = await AgentLab.prepare("hgw", { gateway: true });
    await lab.startAgent();
    for (const v of ["v1", "v2"]) {
      const ep = await lab.agent.createEndpointRequest({
        name: `web-${v}`,
        namespace: "default",
        labels: { app: "web", version: v },
      });
      echoes.push(await startEcho(ep.netns, v), await startGrpcServer(ep.netns, `web-${v}`));
      await lab.agent.upsertService({
        name: v,
        namespace: "default",
        selector: { version: v },
        ports: [{ port: 8080, protocol: "TCP" }],
      });
    }
    const g = lab.agent.gateways;
    assert.ok(g, "the gateway is on");
    await g.apply(GATEWAY, "gateway.yaml");
    out = await lab.outsideNamespace([]);
    url = `http://${g.address ?? ""}:8000`;
  });
  after(async () => {
    for (const c of echoes) killGroup(c);
    await lab?.destroy();
  });

  test("the gateway address has the reserved ingress identity (8) in the ipcache", () => {
    const addr = lab.agent.gateways?.address;
    const entry = lab.agent.ipcache().find((e) => e.prefix.startsWith(`${addr ?? ""}/`));
    assert.equal(entry?.identity, 8, JSON.stringify(entry));
  });

  test("an outside namespace reaches both weighted backends through the Gateway", async () => {
    const got = await waitFor(
      () => httpGet(out, `${url}/x`, 60),
      (as) => as.every((a) => a.status === 200),
    );
    const n = got.filter((a) => a.headers?.["x-backend"] === "v1").length;
    assert.ok(n > 12 && n < 48, `v1 took ${n} of 60`);
    assert.equal(httpGet(out, `${url}/gone`)[0]?.status, 500);
  });

  test("an Ingress of class membrane routes by host on port 80", () => {
    const a = httpGet(out, `http://${lab.agent.gateways?.address ?? ""}/`, 1, {
      host: "shop.example.com",
    })[0];
    assert.equal(a?.headers?.["x-backend"], "v2", JSON.stringify(a));
  });

  test("a GRPCRoute to a v1 Service with appProtocol h2c: calls over HTTP/2, balanced per request", async () => {
    await lab.agent.lb.apply(GRPC, "grpc-service.yaml");
    await lab.agent.gateways?.apply(GRPC_ROUTE, "grpc-route.yaml");
    const addr = `${lab.agent.gateways?.address ?? ""}:8000`;
    const got = await waitFor(
      () => grpcCalls(out, addr, "/demo.Other/Ping", 20),
      (as) => as.every((a) => a.code === 0),
    );
    const names = new Set(got.map((a) => a.body?.backend));
    assert.deepEqual([...names].sort(), ["web-v1", "web-v2"], JSON.stringify(got[0]));
  });

  test("backend policy: fromEntities [ingress] admits gateway traffic; a policy without it denies", async () => {
    await lab.agent.applyPolicies(ALLOW_INGRESS, "allow.yaml");
    await lab.agent.gateways?.refresh();
    assert.equal(httpGet(out, `${url}/y`, 4).filter((a) => a.status === 200).length, 4);
    await lab.agent.applyPolicies(ONLY_CLIENTS, "only-clients.yaml");
    await lab.agent.gateways?.refresh(); // idle backend connections closed: the next one is judged anew
    const denied = httpGet(out, `${url}/z`, 1)[0];
    assert.equal(denied?.status, 503, JSON.stringify(denied));
  });

  test("status: the route is Accepted, ResolvedRefs=False (BackendNotFound), the Gateway Programmed", () => {
    const rs = lab.agent.gateways?.list(["Gateway", "HTTPRoute", "Ingress"]) ?? [];
    const route = rs.find((r) => r.kind === "HTTPRoute")?.status as {
      parents: { conditions: { type: string; status: string; reason: string }[] }[];
    };
    const c = route.parents[0]?.conditions ?? [];
    assert.equal(c.find((x) => x.type === "Accepted")?.status, "True");
    assert.equal(c.find((x) => x.type === "ResolvedRefs")?.reason, "BackendNotFound");
    const gw = rs.find((r) => r.kind === "Gateway")?.status as {
      conditions: { type: string; status: string }[];
    };
    assert.equal(gw.conditions.find((x) => x.type === "Programmed")?.status, "True");
  });
});

async function waitFor<T>(f: () => T, ok: (t: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 300));
  }
}
