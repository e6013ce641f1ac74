/**
 * Gateway API conformance, replayed (root): the suite's HTTPRoute cases about
 * what a backendRef points at.
 *
 * - HTTPRouteBackendProtocolH2C: a Service port with appProtocol
 *   kubernetes.io/h2c is spoken to over HTTP/2 with prior knowledge; the
 *   suite's request is itself h2c (prior knowledge); an HTTP/1.1 one too.
 * - HTTPRouteServiceTypes, through the agent as a user applies them (`v1`
 *   Service and `discovery.k8s.io/v1` EndpointSlice YAML, the suite's
 *   manifest): a headless Service (clusterIP None, a selector), a Service
 *   without a selector whose EndpointSlices are written by hand (IPv4 and an
 *   empty IPv6 one), and a headless one with hand-written slices; each
 *   reaches infra-backend-v1's pod on its targetPort (3000). The suite's
 *   BackendProtocolH2C Service port (8081, h2c, targetPort 3001) through
 *   the agent too.
 * - Not the suite's: the gateway dials the port the endpoints serve the
 *   Service port on (a named targetPort resolved on the pod; a hand-written
 *   EndpointSlice's port where it differs from targetPort), as kube-proxy does.
 *
 * The cases are written here in our words from the suite's contract.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { BASE, ConformanceLab, INFRA, startEchoPods, type Seen } from "./conformance-lab.js";
import { judge, to } from "./conformance-check.js";
import { httpGet, killGroup } from "./netns-lab.js";

const skip = rootSkipReason() ?? false;
const V1 = "infra-backend-v1";

describe("Gateway API conformance: HTTPRouteBackendProtocolH2C (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
  });
  after(async () => {
    await lab?.destroy();
  });

  test("a backendRef to the Service's h2c port (appProtocol kubernetes.io/h2c) reaches the pod over HTTP/2", async () => {
    await lab.apply(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-protocol-h2c, namespace: ${INFRA}}
spec:
  parentRefs: [{name: same-namespace}]
  rules: [{backendRefs: [{name: ${V1}, port: 8081}]}]
`);
    const cases = [
      { req: { path: "/", h2: true }, want: to(V1) },
      { req: { path: "/h1-client" }, want: to(V1) },
    ];
    const got = await lab.send(cases.map((c) => c.req));
    judge(cases, got);
    assert.deepEqual(
      got.map((r) => r.seen?.protocol),
      ["HTTP/2.0", "HTTP/2.0"],
    );
  });
});

/** The suite's shared class and Gateways (the lab's BASE), and its ServiceTypes route (+ the h2c port). */
const MANIFEST = `${BASE}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: service-types, namespace: ${INFRA}}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /manual-endpointslices}}]
    backendRefs: [{name: manual-endpointslices, port: 8080}]
  - matches: [{path: {type: Exact, value: /headless}}]
    backendRefs: [{name: headless, port: 8080}]
  - matches: [{path: {type: Exact, value: /headless-manual-endpointslices}}]
    backendRefs: [{name: headless-manual-endpointslices, port: 8080}]
  - matches: [{path: {type: Exact, value: /h2c}}]
    backendRefs: [{name: ${V1}, port: 8081}]
  - matches: [{path: {type: Exact, value: /named-target-port}}]
    backendRefs: [{name: named-target-port, port: 8080}]
  - matches: [{path: {type: Exact, value: /slice-port}}]
    backendRefs: [{name: slice-port, port: 8080}]
`;

/** The suite's Services (its infra-backend-v1 with the h2c port) and hand-written slices to the pod at `ip`. */
function services(ip: string): string {
  const port = `ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}]`;
  const svc = (name: string, more: string): string => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
${more}  ${port}
`;
  const slice = (svcName: string, family: "IPv4" | "IPv6", addresses: string[]): string => `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${svcName}-ip${family === "IPv4" ? 4 : 6}
  namespace: ${INFRA}
  labels: {kubernetes.io/service-name: ${svcName}}
addressType: ${family}
ports: [{name: first-port, port: 3000, protocol: TCP}]
endpoints: [${addresses.map((a) => `{addresses: ["${a}"], conditions: {ready: true}}`).join(", ")}]
`;
  return (
    `apiVersion: v1
kind: Service
metadata: {name: ${V1}, namespace: ${INFRA}}
spec:
  selector: {app: ${V1}}
  ports:
  - {name: first-port, protocol: TCP, port: 8080, targetPort: 3000}
  - {name: second-port, protocol: TCP, appProtocol: kubernetes.io/h2c, port: 8081, targetPort: 3001}
` +
    svc("manual-endpointslices", "") +
    slice("manual-endpointslices", "IPv4", [ip]) +
    slice("manual-endpointslices", "IPv6", []) +
    svc("headless", `  clusterIP: None\n  selector: {app: ${V1}}\n`) +
    svc("headless-manual-endpointslices", "  clusterIP: None\n") +
    slice("headless-manual-endpointslices", "IPv4", [ip]) +
    slice("headless-manual-endpointslices", "IPv6", []) +
    // Not the suite's: the endpoints' port is the pod's named port (targetPort http -> 3000), and
    // a hand-written slice's port (3000) where the Service says targetPort 8080 (as kube-proxy, the slice wins).
    `---
apiVersion: v1
kind: Service
metadata: {name: named-target-port, namespace: ${INFRA}}
spec:
  selector: {app: ${V1}}
  ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: slice-port, namespace: ${INFRA}}
spec:
  ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: 8080}]
` +
    slice("slice-port", "IPv4", [ip])
  );
}

describe("Gateway API conformance: HTTPRouteServiceTypes through the agent (root)", { skip }, () => {
  let lab: AgentLab;
  let out: string;
  let echo: ChildProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), "g16st-"));

  before(async () => {
    lab = await AgentLab.start("g16st", { gateway: true });
    const ep = await lab.agent.createEndpointRequest({
      name: `${V1}-pod`,
      namespace: INFRA,
      labels: { app: V1 },
      ports: [{ name: "http", port: 3000, protocol: "TCP" }],
    });
    echo = await startEchoPods(
      ep.netns,
      join(dir, "echo.log"),
      { [ep.ipv4]: { namespace: INFRA, pod: `${V1}-pod` } },
      3000,
    );
    await lab.agent.lb.apply(services(ep.ipv4), "service-types.yaml");
    await lab.agent.gateways?.apply(MANIFEST, "gateway.yaml");
    out = await lab.outsideNamespace([]);
  });
  after(async () => {
    if (echo) killGroup(echo);
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the route's backendRefs all resolve (Accepted, ResolvedRefs)", () => {
    const r = lab.agent.gateways?.list(["HTTPRoute"]).find((x) => x.name === "service-types");
    const cs = (
      r?.status as { parents: { conditions: { type: string; status: string; reason: string }[] }[] }
    ).parents[0]?.conditions;
    assert.deepEqual(
      cs?.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ["Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs"],
    );
  });

  test("a headless Service, a Service with manual EndpointSlices and a headless one with them each reach the pod; the h2c port over HTTP/2", () => {
    const seen = (path: string): string => {
      const a = httpGet(out, `http://${lab.agent.gateways?.address ?? ""}${path}`)[0];
      if (a?.status !== 200) return `status ${a?.status} ${a?.error ?? a?.body ?? ""}`;
      const s = JSON.parse(a.body ?? "{}") as Seen;
      return `${s.pod} ${s.path} ${s.protocol}`;
    };
    const paths = ["/manual-endpointslices", "/headless", "/headless-manual-endpointslices", "/h2c", "/named-target-port", "/slice-port"]; // prettier-ignore
    assert.deepEqual(paths.map(seen), [
      `${V1}-pod /manual-endpointslices HTTP/1.1`,
      `${V1}-pod /headless HTTP/1.1`,
      `${V1}-pod /headless-manual-endpointslices HTTP/1.1`,
      `${V1}-pod /h2c HTTP/2.0`,
      `${V1}-pod /named-target-port HTTP/1.1`,
      `${V1}-pod /slice-port HTTP/1.1`,
    ]);
  });
});
