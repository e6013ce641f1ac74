/**
 * The pure parts of lb-l7 (`service.cilium.io/lb-l7: enabled`): which frontends the
 * proxy balances, what the LB table holds for them, and the proxy's check of the
 * services it is handed (shape, indexes, identities without an entry).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileLb, fixedChains } from "../../src/datapath/lb-compile.js";
import { lbWireDelta } from "../../src/datapath/lb-wire.js";
import { MembraneError } from "../../src/errors.js";
import { desiredLb } from "../../src/lb/desired.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { LbServiceIndex, lbServicesFrom, type ProxyLbService } from "../../src/proxy/lb/services.js";

const svc = (annotation: string): string => `apiVersion: v1
kind: Service
metadata: {name: echo, annotations: {service.cilium.io/lb-l7: ${annotation}}}
spec:
  type: NodePort
  selector: {app: echo}
  ports:
  - {name: grpc, port: 9090, targetPort: 9090, nodePort: 30090}
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
`;

const POD = { namespace: "default", labels: { app: "echo" }, ips: ["10.0.0.1"] };

describe("lb-l7: pure parts", () => {
  test("enabled: the ClusterIP's TCP port goes to the proxy; its NodePort and UDP ports stay in the kernel", () => {
    const s = { ...parseLbResources(svc("enabled"), "s").services[0]!, clusterIP: "10.96.0.9" };
    const fs = desiredLb([s], [POD], []).state.frontends;
    const l7 = fs.filter((f) => f.l7 === true).map((f) => `${f.ip}:${f.port}/${f.proto}`);
    assert.deepEqual(l7, ["10.96.0.9:9090/6"]);
    assert.equal(fs.length, 3, "ClusterIP TCP, NodePort TCP, ClusterIP UDP");
    const off = { ...parseLbResources(svc("disabled"), "s").services[0]!, clusterIP: "10.96.0.9" };
    assert.ok(desiredLb([off], [POD], []).state.frontends.every((f) => f.l7 === undefined));
  });

  test("the LB table marks an lb-l7 frontend for the proxy and DNATs it nowhere; classify checks it before the plain frontends", () => {
    const c = compileLb({
      frontends: [
        { ip: "10.96.0.9", proto: 6, port: 9090, backends: [{ ip: "10.0.0.1", port: 9090 }], l7: true },
        { ip: "10.96.0.9", proto: 6, port: 80, backends: [{ ip: "10.0.0.1", port: 80 }] },
      ],
    });
    assert.deepEqual([...(c.elements.get("l7front4")?.keys() ?? [])], ["10.96.0.9 . tcp . 9090"]);
    assert.deepEqual([...(c.elements.get("nat4")?.keys() ?? [])], ["10.96.0.9 . tcp . 80"]);
    assert.ok(![...(c.elements.get("be4")?.keys() ?? [])].some((k) => k.includes("9090")));
    const classify = fixedChains().find((ch) => ch.name === "classify")?.rules ?? [];
    const at = (s: string): number => classify.findIndex((r) => r.includes(s));
    assert.match(classify[at("@l7front4")] ?? "", /ct mark set ct mark or 0x88000000 return$/);
    assert.ok(at("@empty4") < at("@l7front4") && at("@l7front4") < at("@front4"));
    // The element writer knows the set (a backend change is an element delta, not an nft run).
    const d = lbWireDelta(compileLb({ frontends: [] }).elements, c.elements);
    assert.ok(d !== undefined, "the delta is writable by nfnl");
  });

  test("IPv6: a dual-stack lb-l7 Service marks both ClusterIPs for the proxy, each in its family's set; classify6 checks l7front6 before front6", () => {
    const s = {
      ...parseLbResources(svc("enabled"), "s").services[0]!,
      clusterIP: "10.96.0.9",
      clusterIPs: ["10.96.0.9", "fd00:96::9"],
      ipFamilies: ["IPv4", "IPv6"] as ("IPv4" | "IPv6")[],
    };
    const pod = { ...POD, ips: ["10.0.0.1", "fd00:10::1"] };
    const fs = desiredLb([s], [pod], []).state.frontends;
    const l7 = fs.filter((f) => f.l7 === true).map((f) => `${f.ip}:${f.port}/${f.proto}`);
    assert.deepEqual(l7.sort(), ["10.96.0.9:9090/6", "fd00:96::9:9090/6"]);
    const c = compileLb({ frontends: fs });
    assert.deepEqual([...(c.elements.get("l7front6")?.keys() ?? [])], ["fd00:96::9 . tcp . 9090"]);
    assert.ok(![...(c.elements.get("nat6")?.keys() ?? [])].some((k) => k.includes("9090")));
    const classify6 = fixedChains().find((ch) => ch.name === "classify6")?.rules ?? [];
    const at = (x: string): number => classify6.findIndex((r) => r.includes(x));
    assert.match(
      classify6[at("@l7front6")] ?? "",
      /^ip6 daddr .* @l7front6 ct mark set ct mark or 0x88000000 return$/,
    );
    assert.ok(at("@empty6") < at("@l7front6") && at("@l7front6") < at("@front6"));
    const d = lbWireDelta(compileLb({ frontends: [] }).elements, c.elements);
    assert.ok(d !== undefined, "the delta is writable by nfnl");
  });

  test("lb-l7 on a NodePort or a UDP frontend is refused, naming the field", () => {
    for (const f of [
      { proto: 6 as const, port: 30090, backends: [{ ip: "10.0.0.1", port: 9090 }], l7: true },
      { ip: "10.96.0.9", proto: 17 as const, port: 53, backends: [{ ip: "10.0.0.1", port: 53 }], l7: true },
    ])
      assert.throws(
        () => compileLb({ frontends: [f] }),
        (e: unknown) => e instanceof MembraneError && /frontends\[0\]\.l7/.test(e.message),
      );
  });

  test("the proxy takes well-formed services only; an identity without an entry reaches no backend", () => {
    const good: ProxyLbService = {
      name: "default/echo",
      ip: "10.96.0.9",
      port: 9090,
      backends: [
        { ip: "10.0.0.1", port: 9090 },
        { ip: "10.0.0.2", port: 9090 },
      ],
      allowed: [
        { identity: 300, backends: [0, 1] },
        { identity: 301, backends: [1] },
      ],
    };
    assert.deepEqual(lbServicesFrom([good]), [good]);
    for (const bad of [
      {},
      [{ ...good, port: 0 }],
      [{ ...good, port: "9090" }],
      [{ ...good, backends: [{ ip: "10.0.0.1", port: 70000 }] }],
      [{ ...good, allowed: [{ identity: 300, backends: [2] }] }], // index past the backends
      [{ ...good, allowed: [{ identity: 300, backends: [-1] }] }],
      [{ ...good, allowed: [{ identity: "300", backends: [0] }] }],
      [{ ...good, allowed: {} }],
      [null],
    ])
      assert.equal(lbServicesFrom(bad), undefined, JSON.stringify(bad));
    const idx = new LbServiceIndex([good]);
    const s = idx.frontend("10.96.0.9", 9090);
    assert.ok(s);
    assert.equal(idx.frontend("10.96.0.9", 80), undefined);
    assert.deepEqual(idx.backendsFor(s, 301), [{ ip: "10.0.0.2", port: 9090 }]);
    assert.deepEqual(idx.backendsFor(s, 999), [], "fail closed");
  });
});
