/**
 * externalTrafficPolicy / internalTrafficPolicy Local, the pure parts: what the YAML may say, which
 * backends each frontend of a node gets, and what the kernel is given when the node has none.
 * (Real packets: lb-cluster.test.ts, two agents.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileLb, fixedChains } from "../../src/datapath/lb-compile.js";
import type { LbFrontend } from "../../src/datapath/lb-types.js";
import { MembraneError } from "../../src/errors.js";
import { desiredLb, inCidrs, type LbPod } from "../../src/lb/desired.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { readServiceRecord } from "../../src/lb/record.js";
import type { LbService } from "../../src/lb/types.js";

const svc = (extra: string, type = "NodePort"): string => `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ${type}
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
${extra}`;

const pod = (ip: string): LbPod => ({ namespace: "default", labels: { app: "web" }, ips: [ip] });
/** This node's pods are 10.1.0.0/24; 10.2.0.0/24 is another node's. */
const isLocal = inCidrs(["10.1.0.0/24"]);

function frontends(s: LbService, pods: LbPod[]): LbFrontend[] {
  return desiredLb([s], pods, [], isLocal).state.frontends;
}

const allocated = (text: string): LbService => {
  const s = parseLbResources(text, "web.yaml").services[0] as LbService;
  return { ...s, clusterIP: "10.96.0.10", loadBalancerIP: "192.0.2.10" };
};

describe("traffic policy Local (pure)", () => {
  test("Local is read from the YAML; Cluster (or nothing) leaves the service as it was", () => {
    const s = parseLbResources(
      svc("  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n"),
      "w.yaml",
    );
    assert.equal(s.services[0]?.externalLocal, true);
    assert.equal(s.services[0]?.internalLocal, true);
    const c = parseLbResources(svc("  externalTrafficPolicy: Cluster\n"), "w.yaml");
    assert.equal("externalLocal" in (c.services[0] ?? {}), false);
  });

  test("refused with the field named: externalTrafficPolicy on a ClusterIP service, an unknown value", () => {
    for (const [text, path] of [
      [
        svc("  externalTrafficPolicy: Local\n", "ClusterIP").replace(", nodePort: 30080", ""),
        "spec.externalTrafficPolicy",
      ],
      [svc("  internalTrafficPolicy: Nearest\n"), "spec.internalTrafficPolicy"],
    ] as const) {
      assert.throws(
        () => parseLbResources(text, "w.yaml"),
        (e: unknown) => e instanceof MembraneError && e.issues.some((i) => i.path === `document 1: ${path}`),
        path,
      );
    }
  });

  test("externalTrafficPolicy Local: NodePort and LoadBalancer address get the node's backends only; the ClusterIP all", () => {
    const s = allocated(svc("  externalTrafficPolicy: Local\n", "LoadBalancer"));
    const [cip, np, lb] = frontends(s, [pod("10.1.0.5"), pod("10.2.0.7")]);
    assert.deepEqual(
      cip?.backends.map((b) => b.ip),
      ["10.1.0.5", "10.2.0.7"],
    );
    assert.deepEqual(
      np?.backends.map((b) => b.ip),
      ["10.1.0.5"],
    );
    assert.deepEqual(
      lb?.backends.map((b) => b.ip),
      ["10.1.0.5"],
    );
    assert.equal(np?.noLocal, undefined);
  });

  test("no backend on this node but one elsewhere: the external frontends drop (noLocal), the ClusterIP still balances", () => {
    const s = allocated(svc("  externalTrafficPolicy: Local\n"));
    const [cip, np] = frontends(s, [pod("10.2.0.7")]);
    assert.deepEqual(
      cip?.backends.map((b) => b.ip),
      ["10.2.0.7"],
    );
    assert.deepEqual(np, { port: 30080, proto: 6, backends: [], noLocal: true });
    // No backend anywhere: refused at once (reject), as without the policy (kube-proxy's "has no endpoints").
    const [, none] = frontends(s, []);
    assert.deepEqual(none, { port: 30080, proto: 6, backends: [] });
  });

  test("internalTrafficPolicy Local: the ClusterIP gets the node's backends only; none: drop", () => {
    const s = allocated(svc("  internalTrafficPolicy: Local\n"));
    assert.deepEqual(
      frontends(s, [pod("10.1.0.5"), pod("10.2.0.7")])[0]?.backends.map((b) => b.ip),
      ["10.1.0.5"],
    );
    const [cip, np] = frontends(s, [pod("10.2.0.7")]);
    assert.equal(cip?.noLocal, true);
    assert.deepEqual(
      np?.backends.map((b) => b.ip),
      ["10.2.0.7"],
      "the NodePort stays Cluster",
    );
  });

  test("the kernel is told to drop, not reject: drop4 / npdrop, looked up before the reject sets", () => {
    const c = compileLb({
      frontends: [
        { ip: "10.96.0.10", proto: 6, port: 80, backends: [], noLocal: true },
        { proto: 6, port: 30080, backends: [], noLocal: true },
        { ip: "10.96.0.11", proto: 6, port: 80, backends: [] },
      ],
    });
    assert.deepEqual([...(c.elements.get("drop4")?.keys() ?? [])], ["10.96.0.10 . tcp . 80"]);
    assert.deepEqual([...(c.elements.get("npdrop")?.keys() ?? [])], ["tcp . 30080"]);
    assert.deepEqual([...(c.elements.get("empty4")?.keys() ?? [])], ["10.96.0.11 . tcp . 80"]);
    const rules = fixedChains().find((ch) => ch.name === "classify")?.rules ?? [];
    const at = (s: string): number => rules.findIndex((r) => r.includes(s));
    assert.ok(at("@drop4 drop") >= 0 && at("@drop4") < at("@empty4"));
    assert.ok(at("@npdrop drop") >= 0 && at("@npdrop") < at("@npempty"));
    assert.throws(() =>
      compileLb({
        frontends: [{ proto: 6, port: 1, backends: [{ ip: "10.1.0.1", port: 1 }], noLocal: true }],
      }),
    );
  });

  test("externalTrafficPolicy Cluster: a LoadBalancer address from a client outside this node's pods is masqueraded like a NodePort; from its pods, not", () => {
    const [cip, , lb] = frontends(allocated(svc("", "LoadBalancer")), [pod("10.2.0.7")]);
    assert.equal(lb?.external, true, "the LoadBalancer address is external");
    assert.equal(cip?.external, undefined, "the ClusterIP is not");
    const c = compileLb({ frontends: [cip, lb].filter((f): f is LbFrontend => f !== undefined) });
    assert.deepEqual([...(c.elements.get("ext4")?.keys() ?? [])], ["192.0.2.10 . tcp . 80"]);
    const rules = fixedChains(["10.1.0.0/24"]).find((ch) => ch.name === "classify")?.rules ?? [];
    const ext = rules.findIndex((r) => r.includes("@ext4"));
    assert.match(rules[ext] ?? "", /^ip saddr != \{ 10\.1\.0\.0\/24 \} ip daddr .* @ext4 ct mark set ct mark or 0x0a000000 .*return$/); // prettier-ignore
    assert.ok(ext < rules.findIndex((r) => r.includes("@front4")), "looked up before the plain frontends");
    const snat = fixedChains(["10.1.0.0/24"]).find((ch) => ch.name === "snat_c")?.rules ?? [];
    assert.match(
      snat.join("\n"),
      /ct mark & 0x02000000 == 0x02000000 ip daddr != \{ 10\.1\.0\.0\/24 \} masquerade/,
    );
    // No backend: nothing to masquerade (refused at once); without this node's CIDRs, no rule.
    assert.equal(
      compileLb({ frontends: [{ ...(lb as LbFrontend), backends: [] }] }).elements.get("ext4")?.size,
      0,
    );
    assert.ok(
      !(fixedChains().find((ch) => ch.name === "classify")?.rules ?? []).some((r) => r.includes("@ext4")),
    );
    assert.throws(() => compileLb({ frontends: [{ proto: 6, port: 30080, backends: [], external: true }] }), /\.external/); // prettier-ignore
  });

  test("a stored record with a policy that is not `true` is refused, naming the field", () => {
    const rec = {
      namespace: "default",
      name: "web",
      labels: {},
      type: "NodePort",
      algorithm: "random",
      ports: [],
    };
    assert.throws(
      () => readServiceRecord(JSON.stringify({ ...rec, externalLocal: "yes" }), "default/web"),
      /service\.externalLocal/,
    );
    assert.equal(
      readServiceRecord(JSON.stringify({ ...rec, internalLocal: true }), "default/web").internalLocal,
      true,
    );
  });
});
