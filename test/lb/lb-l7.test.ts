/**
 * `service.cilium.io/lb-l7: enabled` through the agent, end to end (root: netns, nftables,
 * the agent's real L7 proxy, real gRPC over HTTP/2 with @grpc/grpc-js): a client pod's
 * calls on ONE connection to the ClusterIP are balanced per request; without the
 * annotation the kernel balances per connection (all calls on one backend); a backend
 * whose ingress policy denies the client gets none of its calls; the annotation removed,
 * the kernel DNATs again. IPv6: an lb-l7 Service with an IPv6 ClusterIP, balanced per
 * request to the backends' IPv6 addresses (the pods are dual-stack).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import type { Flow } from "../../src/observe/flow.js";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { grpcCalls, startGrpcServer, type GrpcAnswer } from "../gateway/grpc-lab.js";
import { killGroup } from "../gateway/netns-lab.js";

const skip = rootSkipReason();
const VIP = "10.96.0.61";
const VIP6 = "fd00:96::61";

const service = (annotated: boolean): string => `apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
${annotated ? "  annotations: {service.cilium.io/lb-l7: enabled}\n" : ""}spec:
  clusterIP: ${VIP}
  selector: {app: echo}
  ports: [{name: grpc, port: 9090, targetPort: 9090, appProtocol: grpc}]
`;

const SERVICE6 = `apiVersion: v1
kind: Service
metadata:
  name: echo6
  namespace: default
  annotations: {service.cilium.io/lb-l7: enabled}
spec:
  ipFamilies: [IPv6]
  ipFamilyPolicy: SingleStack
  clusterIP: ${VIP6}
  selector: {app: echo}
  ports: [{name: grpc, port: 9090, targetPort: 9090, appProtocol: grpc}]
`;

const BE2_NOT_FROM_CLIENT = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: be2-only-other, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo, slot: two}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
`;

/** Which backend answered each call (all calls must succeed). */
function backends(answers: GrpcAnswer[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const a of answers) {
    assert.equal(a.code, 0, `a call failed: ${a.code} ${a.details}`);
    const b = a.body?.backend ?? "?";
    out.set(b, (out.get(b) ?? 0) + 1);
  }
  return out;
}

describe(
  "lb-l7: gRPC to a ClusterIP balanced per request by the proxy (root: netns, nftables, real packets)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    const servers: ChildProcess[] = [];
    const calls = (from: string, n = 40): GrpcAnswer[] =>
      grpcCalls(lab.ep(from).view.netns, `${VIP}:9090`, "/demo.Echo/Echo", n);
    const lbTable = async (): Promise<string> =>
      (
        await runRaw(["nft", "list", "table", "inet", `${lab.options.table as string}_lb`], {
          netns: lab.node,
        })
      ).stdout;

    before(async () => {
      lab = await AgentLab.start("m2l", {
        proxy: true,
        podCidr6: "fd00:261::/64",
        lb: {
          serviceCidr: "10.96.0.0/16",
          serviceCidrSecondary: "fd00:96::/112",
          nodePortRange: [30000, 32767],
        },
      });
      await lab.endpoint("be1", { app: "echo", slot: "one" });
      await lab.endpoint("be2", { app: "echo", slot: "two" });
      await lab.endpoint("client", { app: "client" });
      await lab.endpoint("other", { app: "other" });
      const started = await Promise.allSettled(
        ["be1", "be2"].map((b) => startGrpcServer(lab.ep(b).view.netns, b, "[::]:9090")),
      );
      for (const r of started) if (r.status === "fulfilled") servers.push(r.value);
      for (const r of started) if (r.status === "rejected") throw r.reason;
    });
    after(async () => {
      for (const s of servers) killGroup(s);
      await lab?.destroy();
    });

    test("without the annotation the kernel balances per connection: 40 calls on one connection reach one backend", async () => {
      await lab.agent.lb.apply(service(false), "svc.yaml");
      const got = backends(calls("client"));
      assert.equal(got.size, 1, `one backend took every call: ${JSON.stringify([...got])}`);
      assert.doesNotMatch(await lbTable(), /l7front4 \{[^}]*elements/);
    });

    test("annotated: 40 calls on one connection are spread over both backends by the proxy", async () => {
      await lab.agent.lb.apply(service(true), "svc.yaml");
      assert.match(
        await lbTable(),
        new RegExp(`l7front4 \\{[^}]*elements = \\{ ${VIP.replace(/\./g, "\\.")} \\. tcp \\. 9090`),
      );
      const got = backends(calls("client"));
      assert.equal((got.get("be1") ?? 0) + (got.get("be2") ?? 0), 40);
      assert.ok(
        (got.get("be1") ?? 0) > 0 && (got.get("be2") ?? 0) > 0,
        `both backends: ${JSON.stringify([...got])}`,
      );
      // Each call is an L7 flow naming the backend that answered it.
      const url = `http://${VIP}:9090/demo.Echo/Echo`;
      const line = (f: Flow): string =>
        `${f.verdict} ${f.l7?.http?.method} ${f.l7?.http?.url} ${f.source?.pod_name} -> ${f.destination?.pod_name}`;
      const want = ["be1", "be2"].map((b) => `FORWARDED POST ${url} ${b} -> client`);
      const seen = (
        await lab.flowsWhen(
          { type: ["l7"] },
          (fs) => want.every((w) => fs.some((f) => line(f) === w)),
          "an L7 flow from each backend",
        )
      ).map(line);
      for (const b of ["be1", "be2"])
        assert.ok(seen.includes(`FORWARDED POST ${url} ${b} -> client`), `a flow from ${b}: ${seen.slice(0, 4).join(" | ")}`); // prettier-ignore
    });

    test("a backend whose ingress policy denies the client gets none of its calls; another client still reaches it", async () => {
      await lab.agent.applyPolicies(BE2_NOT_FROM_CLIENT, "be2.yaml");
      try {
        const got = backends(calls("client"));
        assert.deepEqual([...got], [["be1", 40]]);
        const other = backends(calls("other", 20));
        assert.ok((other.get("be2") ?? 0) > 0, `other reaches be2: ${JSON.stringify([...other])}`);
      } finally {
        await lab.agent.deletePolicies(BE2_NOT_FROM_CLIENT, "be2.yaml");
      }
    });

    test("IPv6: an lb-l7 Service with an IPv6 ClusterIP: 40 calls on one connection spread over both backends' IPv6 addresses", async () => {
      // prettier-ignore
      await lab.agent.lb.apply(SERVICE6, "svc6.yaml");
      try {
        assert.match(await lbTable(), new RegExp(`l7front6 \\{[^}]*elements = \\{ ${VIP6} \\. tcp \\. 9090`));
        const got = backends(grpcCalls(lab.ep("client").view.netns, `[${VIP6}]:9090`, "/demo.Echo/Echo", 40));
        assert.equal((got.get("be1") ?? 0) + (got.get("be2") ?? 0), 40);
        assert.ok((got.get("be1") ?? 0) > 0 && (got.get("be2") ?? 0) > 0, `both backends: ${JSON.stringify([...got])}`); // prettier-ignore
        // The proxy's flows name the backend that answered, at its IPv6 address.
        const v6 = new Map(["be1", "be2"].map((b) => [lab.ep(b).view.ipv6 ?? "?", b]));
        const answered = (fs: Flow[]): Set<string> =>
          new Set(
            fs
              .filter((f) => f.l7?.http?.url?.includes(VIP6) === true && f.verdict === "FORWARDED")
              .map((f) => v6.get(f.IP?.source ?? "") ?? ""),
          );
        const seen = await lab.flowsWhen(
          { type: ["l7"] },
          (fs) => answered(fs).has("be1") && answered(fs).has("be2"),
          "an L7 flow from each backend's IPv6 address",
        );
        assert.ok(answered(seen).has("be1") && answered(seen).has("be2"));
      } finally {
        await lab.agent.lb.delete(SERVICE6, "svc6.yaml");
      }
    });

    test("the annotation removed: back to the kernel's DNAT, one backend per connection", async () => {
      await lab.agent.lb.apply(service(false), "svc.yaml");
      assert.doesNotMatch(await lbTable(), /l7front4 \{[^}]*elements/);
      const got = backends(calls("client"));
      assert.equal(got.size, 1, `one backend took every call: ${JSON.stringify([...got])}`);
    });
  },
);
