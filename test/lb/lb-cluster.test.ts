// Services in cluster mode (root, etcd): two real `membrane agent --cluster-store` processes
// (src/lab/cluster.ts). A Service and an EndpointSlice applied through n1 reach n2 through etcd;
// the ClusterIP (from the agents' --service-cidr) answers from a pod on either node with a backend
// on n2, with real TCP; a NodePort on n1 answers a client outside the cluster from that backend
// (masqueraded, so the reply returns through n1); with traffic policy Local only the node's own
// backends, the client's address kept, and a node without one drops; a slice's change through n2 moves n1's backends; a delete through n2 empties
// both nodes' tables. Dual-stack (pod and service CIDRs of both families, VXLAN between the
// nodes): a RequireDualStack Service applied through n1 has the same two ClusterIPs on both nodes,
// and its IPv6 one reaches the backend on n2 from a pod on n1 (over the tunnel) and on n2.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { createEndpoint } from "../../src/lab/cluster-api.js";
import type { ServiceView } from "../../src/lb/types.js";
import type { LbApplyReport } from "../../src/agent/controllers/lb.js";
import { waitRealized, type NodeRealized } from "../../src/cluster/realized.js";
import { Probe } from "../../src/probe/probe.js";
import { rootSkipReason } from "../datapath/harness.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const run = promisify(execFile);

const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

const DUAL = `apiVersion: v1
kind: Service
metadata: {name: web6, namespace: default}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

const NODE_PORT = `apiVersion: v1
kind: Service
metadata: {name: webnp, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
`;

// externalTrafficPolicy Local on its NodePort, internalTrafficPolicy Local on its ClusterIP.
const LOCAL = `apiVersion: v1
kind: Service
metadata: {name: weblocal, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
`;

const sliceService = (ip: string): string => `apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  ports: [{name: http, port: 81, targetPort: 8081}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: default, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: http, port: 8081, protocol: TCP}]
endpoints: [{addresses: ["${ip}"]}]
`;

const services = async (n: LabNode): Promise<ServiceView[]> =>
  (await n.client.request("GET", "/v1/lb/services")) as ServiceView[];

/** Polls `n`'s services until `ok` holds (a safety net of 30 s, not a measurement). */
async function until(n: LabNode, what: string, ok: (s: ServiceView[]) => boolean): Promise<ServiceView[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = await services(n);
    if (ok(s)) return s;
    if (Date.now() > deadline)
      throw new Error(`${n.name}: timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("services shared in cluster mode (root: etcd, two agent processes, real packets)", { skip }, () => {
  test("applied on n1, balanced on n2 too; backends on the other node answer through the ClusterIP; changes and deletes through n2 reach n1", async () => {
    const prefix = "hlb" + randomBytes(3).toString("hex").slice(0, 5);
    let lab: LabCluster | undefined;
    const probes: Probe[] = [];
    try {
      // Dual-stack: IPv6 pod CIDRs need a tunnel over the IPv4 underlay (native routing skips them: peer-routes.ts).
      lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 5, tunnel: "vxlan", clusterCidr: "10.200.0.0/16,fd00:200::/104", agentArgs: ["--service-cidr", "10.97.0.0/16,fd00:97::/112"] }); // prettier-ignore
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      const web = await createEndpoint(n2, "web", { app: "web" });
      const client1 = await createEndpoint(n1, "client", { app: "client" });
      const client2 = await createEndpoint(n2, "client2", { app: "client" });
      const [srv, c1, c2] = [web, client1, client2].map((e) => Probe.start(e.netns)) as [Probe, Probe, Probe];
      probes.push(srv, c1, c2);
      await srv.listen("tcp", 8080);
      await srv.listen("tcp", 8081);

      const r = (await n1.client.request("POST", "/v1/lb/resources", { text: SERVICE, file: "web.yaml" })) as LbApplyReport; // prettier-ignore
      assert.deepEqual(r.resources.map((x) => x.status), ["created"]); // prettier-ignore
      // `apply --wait`: every node realized the write's revision, so n2 balances it already.
      const realized = async (): Promise<NodeRealized[]> =>
        ((await n1.client.request("GET", "/v1/cluster/realized")) as { nodes: NodeRealized[] }).nodes;
      assert.equal(typeof r.clusterRevision, "number", "the answer carries the revision to wait for");
      await waitRealized(realized, r.clusterRevision ?? 0, 30_000);
      const backend = `${web.ipv4}:8080`;
      const has = (s: ServiceView[]): boolean => s.some((v) => v.name === "web" && v.backends.some((b) => b.address === backend && b.state === "active")); // prettier-ignore
      const on2 = await services(n2);
      assert.ok(has(on2), "n2 balances the Service from n1 once it realized the revision");
      // n1 learns n2's pod as a backend (a remote endpoint, through the cluster's ipcache).
      const on1 = await until(n1, "n2's pod as a backend", has);
      const vip = on1.find((v) => v.name === "web")?.clusterIP ?? "";
      assert.match(vip, /^10\.97\./, "allocated from --service-cidr");
      assert.equal(on2.find((v) => v.name === "web")?.clusterIP, vip, "the same ClusterIP on every node");

      assert.equal(await c1.tcp(vip, 80, 3000), "ok", "a pod on n1 -> ClusterIP -> the backend on n2");
      assert.equal(await c2.tcp(vip, 80, 3000), "ok", "a pod on n2 -> ClusterIP -> the backend on n2");

      // NodePort on n1 from outside the cluster (an address on the underlay) to the backend on n2:
      // masqueraded to n1's address, so the reply comes back through n1 (not straight from n2).
      await n1.client.request("POST", "/v1/lb/resources", { text: NODE_PORT, file: "np.yaml" });
      await until(n1, "the NodePort's backend", (s) => s.some((v) => v.name === "webnp" && v.backends.length === 1)); // prettier-ignore
      const outside = `${prefix}-ul`; // the underlay's own namespace (the lab's, removed by stop())
      await run("ip", ["-n", outside, "addr", "add", "172.31.0.200/24", "dev", "br0"]);
      const out = Probe.start(outside);
      probes.push(out);
      assert.equal(
        await out.tcp(n1.ip, 30080, 3000),
        "ok",
        "outside -> n1:30080 -> the backend on n2, and back",
      );

      // Traffic policy Local (kube-proxy's): only the receiving node's own backends, the client's
      // address kept; a node without one drops (no reset, no masquerade to another node).
      const rl = (await n1.client.request("POST", "/v1/lb/resources", { text: LOCAL, file: "local.yaml" })) as LbApplyReport; // prettier-ignore
      await waitRealized(realized, rl.clusterRevision ?? 0, 30_000);
      const loc = await until(n1, "the Local service's backend", (s) => s.some((v) => v.name === "weblocal" && v.backends.length === 1)); // prettier-ignore
      const localVip = loc.find((v) => v.name === "weblocal")?.clusterIP ?? "";
      assert.equal(loc.find((v) => v.name === "weblocal")?.externalTrafficPolicy, "Local");
      assert.equal(
        await out.open("local", n2.ip, 30081, 3000),
        "ok",
        "outside -> n2:30081 -> its own backend",
      );
      const { stdout: peers } = await run("ip", ["netns", "exec", web.netns, "ss", "-Htn", "state", "established", "sport", "=", ":8080"]); // prettier-ignore
      assert.match(
        peers,
        /172\.31\.0\.200\]?:/,
        "the backend sees the outside client's address (not masqueraded)",
      );
      assert.equal(
        await out.tcp(n1.ip, 30081, 1000),
        "timeout",
        "n1 has no local backend: dropped, not forwarded",
      );
      assert.equal(
        await c2.tcp(localVip, 80, 3000),
        "ok",
        "internalTrafficPolicy Local: n2's pod -> n2's backend",
      );
      assert.equal(
        await c1.tcp(localVip, 80, 1000),
        "timeout",
        "internalTrafficPolicy Local: n1 has none, dropped",
      );

      // A selector-less Service and its slice, applied through n2, balanced on n1.
      await n2.client.request("POST", "/v1/lb/resources", { text: sliceService(web.ipv4), file: "ext.yaml" });
      const ext = await until(n1, "the slice's Service from n2", (s) => s.some((v) => v.name === "ext" && v.backends.length === 1)); // prettier-ignore
      const extVip = ext.find((v) => v.name === "ext")?.clusterIP ?? "";
      assert.equal(await c1.tcp(extVip, 81, 3000), "ok", "n1 -> the slice's ClusterIP -> the endpoint on n2");
      // The slice changed through n2 (its endpoint not ready): n1 refuses at once (no ready backend).
      const notReady = (await n2.client.request("POST", "/v1/lb/resources", {
        text: sliceService(web.ipv4).replace(
          `["${web.ipv4}"]}]`,
          `["${web.ipv4}"], conditions: {ready: false}}]`,
        ),
        file: "ext.yaml",
      })) as LbApplyReport;
      await until(n1, "the slice's change from n2", (s) => s.some((v) => v.name === "ext" && v.backends[0]?.state === "not-ready")); // prettier-ignore
      // The view above changes before the kernel does: `apply --wait` (n1 realized the write) first.
      await waitRealized(realized, notReady.clusterRevision ?? 0, 30_000);
      assert.equal(await c1.tcp(extVip, 81, 3000), "ECONNREFUSED", "no ready backend: refused at once on n1");

      // Applied at the same moment through both agents: distinct addresses and ports on both nodes.
      const np = (name: string): string => NODE_PORT.replace("name: webnp", `name: ${name}`).replace(", nodePort: 30080", ""); // prettier-ignore
      const [ra, rb] = (await Promise.all([
        n1.client.request("POST", "/v1/lb/resources", { text: np("race-a"), file: "a.yaml" }),
        n2.client.request("POST", "/v1/lb/resources", { text: np("race-b"), file: "b.yaml" }),
      ])) as [LbApplyReport, LbApplyReport];
      await waitRealized(realized, Math.max(ra.clusterRevision ?? 0, rb.clusterRevision ?? 0), 30_000);
      for (const n of [n1, n2]) {
        const all = await services(n);
        assert.equal(
          new Set(all.map((v) => v.clusterIP)).size,
          all.length,
          `${n.name}: a ClusterIP given twice`,
        );
        const ports = all.flatMap((v) => v.ports.flatMap((p) => /:(\d+)\//.exec(p)?.[1] ?? [])); // "80:31000/TCP"
        assert.equal(new Set(ports).size, ports.length, `${n.name}: a NodePort given twice`);
        assert.ok(all.some((v) => v.name === "race-a") && all.some((v) => v.name === "race-b"));
      }

      // Dual-stack, IPv6 first: applied through n1, the same two ClusterIPs on both nodes; the IPv6 one
      // reaches the backend on n2 from n1's pod (over the tunnel) and from n2's.
      assert.match(web.ipv6 ?? "", /^fd00:200:/, "the pods are dual-stack");
      const dual = (await n1.client.request("POST", "/v1/lb/resources", { text: DUAL, file: "web6.yaml" })) as LbApplyReport; // prettier-ignore
      await waitRealized(realized, dual.clusterRevision ?? 0, 30_000);
      const both = (s: ServiceView[]): boolean => (s.find((v) => v.name === "web6")?.backends.length ?? 0) >= 2; // prettier-ignore
      const d1 = (await until(n1, "web6 with its backend in both families", both)).find(
        (v) => v.name === "web6",
      );
      const d2 = (await until(n2, "web6 with its backend in both families", both)).find(
        (v) => v.name === "web6",
      );
      const [six, four] = d1?.clusterIPs ?? [];
      assert.match(six ?? "", /^fd00:97::/, JSON.stringify(d1));
      assert.match(four ?? "", /^10\.97\./, JSON.stringify(d1));
      assert.deepEqual(d2?.clusterIPs, d1?.clusterIPs, "the same ClusterIPs on both nodes");
      const seen0 = await srv.count("tcp", 8080);
      assert.equal(
        await c1.tcp(six ?? "", 80, 3000),
        "ok",
        "a pod on n1 -> IPv6 ClusterIP -> the backend on n2",
      );
      assert.equal(
        await c2.tcp(six ?? "", 80, 3000),
        "ok",
        "a pod on n2 -> IPv6 ClusterIP -> the backend on n2",
      );
      assert.equal(
        await c1.tcp(four ?? "", 80, 3000),
        "ok",
        "a pod on n1 -> IPv4 ClusterIP -> the backend on n2",
      );
      assert.equal((await srv.count("tcp", 8080)) - seen0, 3, "the backend on n2 took all three");

      // Deleted through n2: gone from n1, and its address no longer answers.
      const deleted = (await n2.client.request("DELETE", "/v1/lb/resources", { text: SERVICE, file: "web.yaml" })) as { clusterRevision?: number }; // prettier-ignore
      await until(n1, "the delete from n2", (s) => !s.some((v) => v.name === "web"));
      // The view above changes before the kernel does: `apply --wait` (n1 realized the delete) first.
      await waitRealized(realized, deleted.clusterRevision ?? 0, 30_000);
      assert.notEqual(await c1.tcp(vip, 80, 600), "ok", "the deleted ClusterIP does not answer");
    } finally {
      for (const p of probes) p.stop();
      await lab?.stop();
    }
  });
});
