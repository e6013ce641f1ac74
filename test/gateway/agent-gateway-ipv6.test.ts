/**
 * The agent's gateway on a dual-stack node (root): the gateway namespace has
 * an IPv4 and an IPv6 address, both with the reserved `ingress` identity (8);
 * a Gateway without spec.addresses is served on both (its status lists both);
 * the outside namespace reaches it over IPv6; a dual-stack Service's
 * endpoints are reached over IPv6 from the gateway's IPv6 address, an IPv4
 * Service's over IPv4 from its IPv4 address; the backends' ingress policy
 * (fromEntities: [ingress]) admits the gateway over IPv6 and drops the same
 * port reached straight from the outside's IPv6 address (world).
 */
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { AgentLab, OUTSIDE6, rootSkipReason } from "../agent/e2e/harness.js";
import { until } from "../support/until.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { httpGet, killGroup, startEcho, type Answer } from "./netns-lab.js";

const skip = rootSkipReason() ?? false;

const GATEWAY = `${CLASS}${gatewayYaml("web", ["{name: http, port: 8000, protocol: HTTP}"], { namespace: "default" })}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web6, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v4}}]
    backendRefs: [{name: web4, port: 8080}]
`;

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: web6, namespace: default}
spec:
  selector: {app: web}
  ipFamilyPolicy: RequireDualStack
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web4, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 8080}]
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

interface Echo {
  readonly peer: string;
}

/** The backend's view of the connection's source (an IPv4 peer of its "::" socket shown plain). */
const peerOf = (a: Answer | undefined): string =>
  ((JSON.parse(a?.body ?? "{}") as Partial<Echo>).peer ?? "").replace(/^::ffff:/, "");

/** One GET from `ns` with curl, bounded: "" when no answer came (a dropped SYN). */
function curl(ns: string, url: string, seconds: number): string {
  const r = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      ns,
      "curl",
      "-g",
      "-s",
      "-m",
      String(seconds),
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      url,
    ],
    { encoding: "utf8", timeout: (seconds + 10) * 1000 },
  );
  return r.stdout === "000" ? "" : r.stdout;
}

describe("agent gateway over IPv6 (root, dual stack)", { skip }, () => {
  let lab: AgentLab;
  let out: string;
  let v4: string;
  let v6: string;
  let web6: string;
  const echoes: ChildProcess[] = [];

  before(async () => {
    lab = await AgentLab.prepare("hgw6", {
      gateway: true,
      podCidr6: "fd00:212::/64",
      lb: {
        serviceCidr: "10.97.0.0/16",
        serviceCidrSecondary: "fd00:97::/112",
        nodePortRange: [30000, 32767],
      },
    });
    await lab.startAgent();
    const ep = await lab.agent.createEndpointRequest({
      name: "web",
      namespace: "default",
      labels: { app: "web" },
    });
    assert.ok(ep.ipv6, "the endpoint has an IPv6 address");
    web6 = ep.ipv6;
    echoes.push(await startEcho(ep.netns, "web", "::"));
    await lab.agent.lb.apply(SERVICES, "services.yaml");
    const g = lab.agent.gateways;
    assert.ok(g?.address && g.address6, "the gateway has both addresses");
    [v4, v6] = [g.address, g.address6];
    await g.apply(GATEWAY, "gateway.yaml");
    out = await lab.outsideNamespace([]);
  });
  after(async () => {
    for (const c of echoes) killGroup(c);
    await lab?.destroy();
  });

  test("both gateway addresses have the reserved ingress identity (8) in the ipcache", () => {
    for (const a of [v4, v6]) {
      const entry = lab.agent.ipcache().find((e) => e.prefix.startsWith(`${a}/`));
      assert.equal(entry?.identity, 8, `${a}: ${JSON.stringify(entry)}`);
    }
  });

  test("a Gateway without spec.addresses is served on both, its status lists both (IPv4 first)", () => {
    const gw = lab.agent.gateways?.list(["Gateway"])[0]?.status as { addresses: { value: string }[] };
    assert.deepEqual(
      gw.addresses.map((a) => a.value),
      [v4, v6],
    );
  });

  test("from outside over IPv6 to a dual-stack Service: the backend is reached over IPv6 from the gateway's IPv6 address", async () => {
    let a: Answer | undefined;
    await until(
      "the Gateway answers on its IPv6 address",
      () => (a = httpGet(out, `http://[${v6}]:8000/x`)[0])?.status === 200,
      { ms: 30_000, every: 300, detail: () => JSON.stringify(a) },
    );
    assert.equal(peerOf(a), v6, JSON.stringify(a));
    // Over IPv4 to the same dual-stack Service: still its IPv6 endpoint.
    assert.equal(peerOf(httpGet(out, `http://${v4}:8000/x`)[0]), v6);
  });

  test("an IPv4 Service: its IPv4 endpoint, from the gateway's IPv4 address (source per family)", () => {
    const a = httpGet(out, `http://[${v6}]:8000/v4`)[0];
    assert.equal(a?.status, 200, JSON.stringify(a));
    assert.equal(peerOf(a), v4);
  });

  test("backend policy over IPv6: fromEntities [ingress] admits the gateway, the outside's IPv6 address is dropped", async () => {
    // Without a policy the outside reaches the backend straight over IPv6: the path exists.
    await until(
      "the outside reaches the backend straight over IPv6",
      () => curl(out, `http://[${web6}]:8080/`, 5) === "200",
      {
        ms: 30_000,
        every: 200,
      },
    );
    await lab.agent.applyPolicies(ALLOW_INGRESS, "allow.yaml");
    await lab.agent.gateways?.refresh();
    const via = httpGet(out, `http://[${v6}]:8000/y`, 3);
    assert.deepEqual(
      via.map((a) => [a.status, peerOf(a)]),
      [
        [200, v6],
        [200, v6],
        [200, v6],
      ],
    );
    assert.equal(curl(out, `http://[${web6}]:8080/`, 3), "", `${OUTSIDE6.outside} (world) is dropped`);
  });
});
