/**
 * One address per Gateway through the agent (root), as Cilium gives each
 * Gateway a LoadBalancer Service: with --lb-pool, a Gateway naming no address
 * gets its own from the pool, its status says it, and outside clients reach
 * that Gateway's routes alone on it. The suite's HTTPRouteMultipleGateways
 * end to end: two Gateways with the same listener (HTTP, port 80, no
 * hostname), a route on both and one dedicated to each. The Gateways'
 * addresses are the Services' reservations: a LoadBalancer Service gets
 * another; a deleted Gateway's address is released (and stops answering);
 * a restarted agent gives each Gateway the address it had.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { CLASS, gatewayYaml } from "./fixtures.js";
import { httpGet, killGroup, startEcho } from "./netns-lab.js";

const skip = rootSkipReason() ?? false;
const POOL = "198.18.7.0/29";

const gateway = (name: string, from: string): string =>
  gatewayYaml(
    name,
    [`{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: ${from}}}}`],
    {
      namespace: "default",
    },
  );
const route = (name: string, parents: string, path: string, backend: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [${parents}]
  rules: [{matches: [{path: {type: PathPrefix, value: ${path}}}], backendRefs: [{name: ${backend}, port: 8080}]}]
`;
const MULTIPLE = `${CLASS}${gateway("same-namespace", "Same")}${gateway("all-namespaces", "All")}${route("multiple-gateways-shared-route", "{name: same-namespace}, {name: all-namespaces}", "/shared", "infra-backend-v1")}${route("same-namespace-dedicated-route", "{name: same-namespace}", "/", "infra-backend-v2")}${route("all-namespaces-dedicated-route", "{name: all-namespaces}", "/", "infra-backend-v3")}`; // prettier-ignore

const LB = `apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: infra-backend-v1}
  ports: [{port: 80, targetPort: 8080}]
`;

describe("each Gateway its own address from the LoadBalancer pool (root)", { skip }, () => {
  let lab: AgentLab;
  let out: string;
  const echoes: ChildProcess[] = [];

  /** The Gateway's status: its addresses and its Programmed condition. */
  const status = (name: string): { addresses: string[]; programmed: string } => {
    const r = lab.agent.gateways?.list(["Gateway"]).find((x) => x.name === name);
    const st = r?.status as {
      addresses?: { value: string }[];
      conditions?: { type: string; status: string; reason: string }[];
    };
    const p = st?.conditions?.find((c) => c.type === "Programmed");
    return { addresses: (st?.addresses ?? []).map((a) => a.value), programmed: `${p?.status}/${p?.reason}` };
  };
  const backendAt = (address: string, path: string): string => {
    const a = httpGet(out, `http://${address}${path}`)[0];
    return a?.status === 200 ? (a.headers?.["x-backend"] ?? "?") : `status ${a?.status} ${a?.error ?? ""}`;
  };

  before(async () => {
    lab = await AgentLab.prepare("g16ga", {
      gateway: true,
      lb: { serviceCidr: "10.96.0.0/16", loadBalancerPool: POOL, nodePortRange: [30000, 32767] },
    });
    await lab.startAgent();
    for (const v of ["v1", "v2", "v3"]) {
      const name = `infra-backend-${v}`;
      const ep = await lab.agent.createEndpointRequest({ name, namespace: "default", labels: { app: name } });
      echoes.push(await startEcho(ep.netns, name));
      await lab.agent.upsertService({
        name,
        namespace: "default",
        selector: { app: name },
        ports: [{ port: 8080, protocol: "TCP" }],
      });
    }
    out = await lab.outsideNamespace([]);
  });
  after(async () => {
    for (const c of echoes) killGroup(c);
    await lab?.destroy();
  });

  test("HTTPRouteMultipleGateways: two Gateways, two addresses of the pool; shared and dedicated routes on each", async () => {
    await lab.agent.gateways?.apply(MULTIPLE, "multiple.yaml");
    const a = status("same-namespace");
    const b = status("all-namespaces");
    assert.equal(a.programmed, "True/Programmed");
    assert.equal(b.programmed, "True/Programmed");
    assert.equal(a.addresses.length, 1, JSON.stringify(a));
    assert.equal(b.addresses.length, 1, JSON.stringify(b));
    const [addrA, addrB] = [a.addresses[0] ?? "", b.addresses[0] ?? ""];
    assert.match(addrA, /^198\.18\.7\.[2-6]$/);
    assert.match(addrB, /^198\.18\.7\.[2-6]$/);
    assert.notEqual(addrA, addrB);
    assert.notEqual(addrA, lab.agent.gateways?.address);
    assert.deepEqual(
      [
        backendAt(addrA, "/shared"),
        backendAt(addrA, "/"),
        backendAt(addrB, "/shared"),
        backendAt(addrB, "/"),
      ],
      ["infra-backend-v1", "infra-backend-v2", "infra-backend-v1", "infra-backend-v3"],
    );
  });

  test("a LoadBalancer Service gets another address of the pool than the Gateways", async () => {
    await lab.agent.lb.apply(LB, "lb.yaml");
    const ext = lab.agent.lb.list().find((v) => v.name === "lb")?.externalIP ?? "";
    const taken = [...status("same-namespace").addresses, ...status("all-namespaces").addresses];
    assert.match(ext, /^198\.18\.7\.[2-6]$/);
    assert.ok(!taken.includes(ext), `${ext} is also a Gateway's (${taken.join(", ")})`);
  });

  test("a restarted agent keeps each Gateway's address; a deleted Gateway's address is released", async () => {
    const before = [status("same-namespace").addresses, status("all-namespaces").addresses];
    await lab.stopAgent();
    await lab.startAgent();
    assert.deepEqual([status("same-namespace").addresses, status("all-namespaces").addresses], before);
    const gone = before[1]?.[0] ?? "";
    assert.equal(backendAt(gone, "/"), "infra-backend-v3");
    await lab.agent.gateways?.apply(gateway("all-namespaces", "All"), "gone.yaml", true);
    assert.match(backendAt(gone, "/"), /^status 0/, "nothing answers on a deleted Gateway's address");
    // Released: the next Gateway may have it.
    await lab.agent.gateways?.apply(gateway("next", "Same"), "next.yaml");
    assert.deepEqual(status("next").addresses, [gone]);
    assert.equal(backendAt(before[0]?.[0] ?? "", "/"), "infra-backend-v2");
  });
});
