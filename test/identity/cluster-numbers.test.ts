// Cluster mode's seam in the pure core: the allocator takes numbers decided by the cluster;
// a label set without one gets reserved:init, which is in default deny both ways (fail closed).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IdentityAllocator } from "../../src/identity/allocator.js";
import { ID, LOCAL_ID_MIN } from "../../src/identity/reserved.js";
import { LabelSet } from "../../src/labels/label.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const ALLOW_ALL_TO_WEB = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [all]}]
`;

describe("cluster numbers in the identity allocator", () => {
  test("a label set the cluster has a number for gets that number", () => {
    const a = new IdentityAllocator({ clusterNumber: () => 4242 });
    assert.equal(a.allocate(LabelSet.parse(["app=a"])).id, 4242);
    assert.deepEqual(a.takePending(), []);
  });

  test("a label set without a number yet gets reserved:init and is listed as pending, once", () => {
    const a = new IdentityAllocator({ clusterNumber: () => undefined });
    const labels = LabelSet.parse(["app=a"]);
    assert.equal(a.allocate(labels).id, ID.init);
    assert.deepEqual(
      a.takePending().map((l) => l.toString()),
      [labels.toString()],
    );
    assert.deepEqual(a.takePending(), [], "drained");
  });

  test("a number this node still uses for other labels is not taken twice", () => {
    const a = new IdentityAllocator({ clusterNumber: () => 300 });
    assert.equal(a.allocate(LabelSet.parse(["app=a"])).id, 300);
    assert.equal(a.allocate(LabelSet.parse(["app=b"])).id, ID.init);
  });

  test("CIDR identities stay local (>= 2^24) in cluster mode", () => {
    const a = new IdentityAllocator({ clusterNumber: () => undefined });
    assert.equal(a.allocateLocal(LabelSet.parse(["cidr:10.0.0.0/8"])).id, LOCAL_ID_MIN);
  });
});

describe("an endpoint whose identity is not resolved (reserved:init)", () => {
  test("is in default deny both ways, nothing but the node allowed, even when policies select its labels", () => {
    let known: number | undefined = undefined;
    const e = new PolicyEngine({ allocator: new IdentityAllocator({ clusterNumber: () => known }) });
    for (const p of parsePolicies(ALLOW_ALL_TO_WEB, "p.yaml")) e.upsertPolicy(p);
    const spec = { name: "w", namespace: "default", labels: { app: "web" }, ips: ["10.0.0.5"] };
    assert.equal(e.upsertEndpoint(spec).id, ID.init);
    e.regenerate();
    const closed = e.endpointPolicy("default", "w");
    assert.equal(closed.ingress.enforced, true);
    assert.equal(closed.egress.enforced, true);
    // Only the node itself may reach it (allowLocalhost, as for every endpoint in Cilium).
    assert.deepEqual(
      [...closed.ingress.mapState.entries()].map((x) => x.identity),
      [ID.host],
    );
    assert.equal(closed.egress.mapState.size, 0);
    const q = {
      from: { kind: "ip", ip: "192.0.2.9" },
      to: { kind: "endpoint", name: "w" },
      proto: "TCP",
      port: 80,
    } as const;
    assert.equal(e.decide(q).verdict, "deny");

    // The cluster answers: upserted again, the endpoint takes its number and its policy.
    known = 777;
    assert.equal(e.upsertEndpoint(spec).id, 777);
    e.regenerate();
    const open = e.endpointPolicy("default", "w");
    assert.equal(open.egress.enforced, false);
    assert.ok(open.ingress.mapState.size > 0);
    assert.equal(e.decide(q).verdict, "allow");
  });
});
