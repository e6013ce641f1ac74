/** The pure parts of services in the kernel: parsing, desired state, slots, Maglev, element deltas. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileLb, lbDelta, MAGLEV_M } from "../../src/datapath/lb-compile.js";
import { lbWireDelta } from "../../src/datapath/lb-wire.js";
import { MembraneError } from "../../src/errors.js";
import { allocate } from "../../src/lb/allocate.js";
import { activePortBackends, desiredLb } from "../../src/lb/desired.js";
import { maglevTable } from "../../src/lb/maglev.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { DEFAULT_LB_CONFIG } from "../../src/lb/types.js";

const SVC = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
  sessionAffinity: ClientIP
`;

describe("services in the kernel: pure parts", () => {
  test("a Service as Kubernetes users write it: defaults (namespace, protocol, affinity timeout)", () => {
    const { services } = parseLbResources(SVC, "web.yaml");
    assert.deepEqual(services[0], {
      namespace: "default",
      name: "web",
      labels: {},
      type: "LoadBalancer",
      selector: { app: "web" },
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: "http" }],
      affinitySeconds: 10800,
      algorithm: "random",
    });
  });

  test("hostile and wrong input: every problem named with its document and field path", () => {
    const bad = `apiVersion: v2\nkind: Service\nmetadata: {name: Web_1}\nspec: {ports: [{port: "x"}], clusterIP: "fd00::zz"}\n---\n[1, 2]\n---\nkind: Secret\n`;
    assert.throws(
      () => parseLbResources(bad, "bad.yaml"),
      (e: unknown) => {
        assert.ok(e instanceof MembraneError && e.code === "SERVICE_INVALID");
        assert.deepEqual(
          e.issues.map((i) => i.path),
          [
            "document 1: apiVersion",
            "document 1: metadata.name",
            "document 1: spec.clusterIP",
            "document 1: spec.ports[0].port",
            "document 2: (document)",
            "document 3: kind",
            "document 3: metadata",
          ],
        );
        return true;
      },
    );
  });

  test("allocation: a ClusterIP, NodePorts and a pool address; a taken NodePort is refused by field", () => {
    const s = parseLbResources(SVC, "web.yaml").services[0];
    assert.ok(s);
    const cfg = { ...DEFAULT_LB_CONFIG, loadBalancerPool: "192.0.2.0/28" };
    const a = allocate(s, undefined, { ips: new Map(), nodePorts: new Map() }, cfg);
    assert.equal(a.clusterIP, "10.96.0.2");
    assert.equal(a.loadBalancerIP, "192.0.2.2");
    assert.equal(a.ports[0]?.nodePort, 30000);
    const taken = { ips: new Map(), nodePorts: new Map([["TCP/30001", "default/other"]]) };
    const withPort = { ...s, ports: [{ ...s.ports[0]!, nodePort: 30001 }] };
    assert.throws(
      () => allocate(withPort, undefined, taken, cfg),
      /spec\.ports\[0\]\.nodePort TCP\/30001 is already used/,
    );
  });

  test("backends: named target ports per pod; terminating slice endpoints only when none is ready", () => {
    const s = { ...parseLbResources(SVC, "w").services[0]!, clusterIP: "10.96.0.9" };
    const pods = [
      {
        namespace: "default",
        labels: { app: "web" },
        ips: ["10.0.0.1"],
        namedPorts: [{ name: "http", port: 8080, protocol: "TCP" }],
      },
      { namespace: "default", labels: { app: "web" }, ips: ["10.0.0.2"] }, // no port named http: not a backend
      {
        namespace: "other",
        labels: { app: "web" },
        ips: ["10.0.0.3"],
        namedPorts: [{ name: "http", port: 8080, protocol: "TCP" }],
      },
    ];
    const d = desiredLb([s], pods, []);
    assert.deepEqual(d.state.frontends[0]?.backends, [{ ip: "10.0.0.1", port: 8080 }]);
    const { selector: _sel, affinitySeconds: _aff, ...rest } = s;
    const plain = { ...rest, type: "ClusterIP" as const };
    const slice = (ready: boolean) => ({
      namespace: "default",
      name: "web-1",
      service: "web",
      ports: [{ name: "http", port: 9090, protocol: "TCP" as const }],
      endpoints: [
        { addresses: ["10.0.1.1"], ready, serving: true, terminating: !ready },
        { addresses: ["10.0.1.2"], ready: false, serving: true, terminating: true },
      ],
    });
    assert.deepEqual(desiredLb([plain], [], [slice(true)]).state.frontends[0]?.backends, [
      { ip: "10.0.1.1", port: 9090 },
    ]);
    assert.equal(
      desiredLb([plain], [], [slice(false)]).state.frontends[0]?.backends.length,
      2,
      "the terminating fallback",
    );
  });

  test("per Service port, the active endpoints and the port each serves it on (the gateway dials these)", () => {
    const two = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: admin, port: 81, targetPort: 9000}]
`;
    const s = { ...parseLbResources(two, "w").services[0]!, clusterIP: "10.96.0.9" };
    const pod = (ip: string, http: number | undefined, ready = true) => ({
      namespace: "default",
      labels: ready ? { app: "web" } : { app: "other" },
      ips: [ip, "fd00::1"],
      ...(http !== undefined ? { namedPorts: [{ name: "http", port: http, protocol: "TCP" }] } : {}),
    });
    const got = activePortBackends(s, [pod("10.0.0.1", 3000), pod("10.0.0.2", 3001), pod("10.0.0.3", undefined), pod("10.0.0.4", 3000, false)], []); // prettier-ignore
    assert.deepEqual(Object.fromEntries(got), {
      // The pod without a port named http is no backend of port 80; the IPv6 addresses are not of an IPv4 Service.
      80: [
        { ip: "10.0.0.1", port: 3000 },
        { ip: "10.0.0.2", port: 3001 },
      ],
      81: [
        { ip: "10.0.0.1", port: 9000 },
        { ip: "10.0.0.2", port: 9000 },
        { ip: "10.0.0.3", port: 9000 },
      ],
    });
    // A selectorless headless Service: the slice's port, whatever targetPort says; not ready: none.
    const { selector: _sel, ...rest } = s;
    const plain = { ...rest, clusterIP: "None" };
    const slice = {
      namespace: "default",
      name: "web-1",
      service: "web",
      ports: [{ name: "http", port: 8443, protocol: "TCP" as const }],
      endpoints: [
        { addresses: ["10.0.1.1"], ready: true, serving: true, terminating: false },
        { addresses: ["10.0.1.2"], ready: false, serving: false, terminating: false },
      ],
    };
    assert.deepEqual(Object.fromEntries(activePortBackends(plain, [], [slice])), {
      80: [{ ip: "10.0.1.1", port: 8443 }],
      81: [],
    });
  });

  test("slots are stable: a leaving backend's slot takes another, the others keep theirs (one element delta)", () => {
    const be = (...n: number[]) => n.map((i) => ({ ip: `10.0.0.${i}`, port: 80 }));
    const a = compileLb({ frontends: [{ ip: "10.96.0.1", proto: 6, port: 80, backends: be(1, 2, 3) }] });
    const b = compileLb({ frontends: [{ ip: "10.96.0.1", proto: 6, port: 80, backends: be(2, 3, 4) }] }, a);
    assert.deepEqual(
      [...(b.elements.get("be4") ?? [])],
      [
        ["10.96.0.1 . tcp . 80 . 0", "10.0.0.4 . 80"],
        ["10.96.0.1 . tcp . 80 . 1", "10.0.0.2 . 80"],
        ["10.96.0.1 . tcp . 80 . 2", "10.0.0.3 . 80"],
      ],
    );
    assert.equal(lbDelta("t", a, b).ops, 2);
    assert.deepEqual(
      lbWireDelta(a.elements, b.elements)?.map((o) => [o.set, o.add.length, o.del.length]),
      [["be4", 1, 1]],
    );
  });

  test("Maglev: every slot filled, near-even shares, and a removed backend moves about its own share", () => {
    const names = Array.from({ length: 10 }, (_, i) => `10.0.0.${i}:80`);
    const t = maglevTable(names);
    assert.equal(t.length, MAGLEV_M);
    const counts = names.map((_, i) => t.filter((x) => x === i).length);
    assert.ok(Math.min(...counts) >= 24 && Math.max(...counts) <= 27, String(counts));
    const u = maglevTable(names.slice(1)); // backend 0 leaves; indexes shift by one
    const moved = t.filter((x, s) => x !== 0 && u[s] !== x - 1).length;
    assert.ok(moved < MAGLEV_M * 0.1, `only slots of the leaving backend should move much: ${moved}`);
  });
});
