/**
 * IPv6 and dual-stack services, the pure parts: spec.ipFamilies / ipFamilyPolicy / clusterIPs as the
 * apiserver reads them, allocation per family from --service-cidr, one set of frontends per family,
 * the family's own sets and chains, and IPv6 element bytes. (Real packets: lb-datapath.test.ts.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileLb } from "../../src/datapath/lb-compile.js";
import type { LbFrontend } from "../../src/datapath/lb-types.js";
import { lbWireDelta } from "../../src/datapath/lb-wire.js";
import { MembraneError } from "../../src/errors.js";
import { allocate } from "../../src/lb/allocate.js";
import { parseLbFlags } from "../../src/lb/config.js";
import { desiredLb } from "../../src/lb/desired.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { readServiceRecord, readSliceRecord } from "../../src/lb/record.js";
import type { LbConfig, LbService } from "../../src/lb/types.js";

const svc = (extra: string, type = "ClusterIP"): string => `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ${type}
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
${extra}`;

const DUAL: LbConfig = parseLbFlags({ serviceCidr: "10.96.0.0/16,fd00:96::/112" });
const V4: LbConfig = parseLbFlags({});
const none = { ips: new Map<string, string>(), nodePorts: new Map<string, string>() };
const parse = (text: string): LbService => parseLbResources(text, "web.yaml").services[0] as LbService;
const refusedAt = (f: () => unknown, path: string): void => {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof MembraneError, String(e));
    const paths = [e.location?.path, ...e.issues.map((i) => i.path)].join(" ");
    assert.ok(paths.includes(path), `${path} not in ${paths}: ${e.message}`);
    return true;
  });
};

describe("IPv6 and dual-stack services (pure)", () => {
  test("--service-cidr takes one CIDR of each family, the first the primary", () => {
    assert.deepEqual(DUAL, { serviceCidr: "10.96.0.0/16", serviceCidrSecondary: "fd00:96::/112", nodePortRange: [30000, 32767] }); // prettier-ignore
    assert.equal(parseLbFlags({ serviceCidr: "fd00:96::/112" }).serviceCidr, "fd00:96::/112");
  });

  test("SingleStack IPv6: allocated from the IPv6 CIDR; PreferDualStack: one of each, primary first", () => {
    const six = allocate(parse(svc("  ipFamilies: [IPv6]\n")), undefined, none, DUAL);
    assert.equal(six.clusterIP, "fd00:96::2");
    assert.deepEqual(six.ipFamilies, ["IPv6"]);
    assert.equal(six.clusterIPs, undefined);
    const dual = allocate(parse(svc("  ipFamilyPolicy: PreferDualStack\n")), undefined, none, DUAL);
    assert.deepEqual(dual.clusterIPs, ["10.96.0.2", "fd00:96::2"]);
    assert.deepEqual(dual.ipFamilies, ["IPv4", "IPv6"]);
    // PreferDualStack on a single-stack cluster: the one family, no error (as the apiserver).
    assert.equal(allocate(parse(svc("  ipFamilyPolicy: PreferDualStack\n")), undefined, none, V4).clusterIPs, undefined); // prettier-ignore
    // A given IPv6 address in its canonical text (element keys are compared as text).
    assert.equal(allocate(parse(svc('  clusterIP: "FD00:96:0::a"\n')), undefined, none, DUAL).clusterIP, "fd00:96::a"); // prettier-ignore
  });

  test("refused with the field named: IPv6 on an IPv4-only cluster, RequireDualStack there, families and addresses that disagree", () => {
    refusedAt(
      () => allocate(parse(svc("  ipFamilies: [IPv6]\n")), undefined, none, V4),
      "spec.ipFamilies[0]",
    );
    refusedAt(
      () => allocate(parse(svc('  clusterIP: "fd00:96::5"\n')), undefined, none, V4),
      "spec.clusterIP",
    );
    refusedAt(() => allocate(parse(svc("  ipFamilyPolicy: RequireDualStack\n")), undefined, none, V4), "spec.ipFamilyPolicy"); // prettier-ignore
    refusedAt(() => parse(svc("  ipFamilies: [IPv4, IPv6]\n")), "spec.ipFamilyPolicy");
    refusedAt(() => parse(svc("  ipFamilyPolicy: PreferDualStack\n  clusterIPs: [10.96.0.5, 10.96.0.6]\n")), "spec.clusterIPs"); // prettier-ignore
    refusedAt(() => parse(svc('  ipFamilies: [IPv6]\n  clusterIP: "10.96.0.5"\n')), "spec.ipFamilies[0]");
    refusedAt(() => parse(svc("  ipFamilies: [IPv6, IPv6]\n  ipFamilyPolicy: PreferDualStack\n")), "spec.ipFamilies[1]"); // prettier-ignore
    refusedAt(() => parse(svc("  ipFamilies: [IPv5]\n")), "spec.ipFamilies[0]");
    refusedAt(() => parse(svc('  clusterIP: "fd00::1%eth0"\n')), "spec.clusterIP");
  });

  test("a dual-stack NodePort: one frontend per family, each with its own family's backends", () => {
    const s = allocate(parse(svc("  ipFamilyPolicy: RequireDualStack\n", "NodePort")), undefined, none, DUAL);
    const pods = [{ namespace: "default", labels: { app: "web" }, ips: ["10.1.0.5", "fd00:1:0::5"] }];
    const { state, views } = desiredLb([s], pods, []);
    assert.deepEqual(
      state.frontends.map((f) => [f.ip ?? `node${f.family ?? 4}`, f.port, f.backends.map((b) => b.ip)]),
      [
        ["10.96.0.2", 80, ["10.1.0.5"]],
        ["node4", s.ports[0]?.nodePort, ["10.1.0.5"]],
        ["fd00:96::2", 80, ["fd00:1::5"]],
        ["node6", s.ports[0]?.nodePort, ["fd00:1::5"]],
      ],
    );
    assert.deepEqual(
      views[0]?.backends.map((b) => b.address),
      ["10.1.0.5:8080", "[fd00:1::5]:8080"],
    );
    assert.deepEqual(views[0]?.clusterIPs, ["10.96.0.2", "fd00:96::2"]);
  });

  test("IPv6 frontends use the family's sets and chains; the two NodePorts of one port do not collide", () => {
    const c = compileLb({
      frontends: [
        { ip: "fd00:96::2", proto: 6, port: 80, backends: [{ ip: "fd00:1::5", port: 8080 }] },
        {
          proto: 6,
          port: 30080,
          family: 6,
          backends: [{ ip: "fd00:1::5", port: 8080 }],
          affinitySeconds: 60,
        },
        { proto: 6, port: 30080, backends: [{ ip: "10.1.0.5", port: 8080 }] },
      ],
    });
    assert.equal(c.elements.get("be6")?.get("fd00:96::2 . tcp . 80 . 0"), "fd00:1::5 . 8080");
    assert.equal(c.elements.get("npbe6")?.get("tcp . 30080 . 0"), "fd00:1::5 . 8080");
    assert.equal(c.elements.get("npbe")?.get("tcp . 30080 . 0"), "10.1.0.5 . 8080");
    assert.deepEqual([...c.chains.keys()].sort(), ["pn1", "v6n1", "v6pa1t60"]);
    assert.match(
      c.chains.get("v6n1")?.[0] ?? "",
      /dnat ip6 to ip6 daddr \. meta l4proto \. th dport \. meta mark map @be6/,
    );
    // Mixed families within one frontend, a non-canonical address: refused naming the field.
    const cases: [LbFrontend, string][] = [
      [
        { ip: "fd00:96::2", proto: 6, port: 80, backends: [{ ip: "10.1.0.5", port: 8080 }] },
        "backends[0].ip",
      ],
      [{ ip: "fd00:96:0::2", proto: 6, port: 80, backends: [] }, ".ip"],
      [{ ip: "fd00:96::2", proto: 6, port: 80, backends: [], family: 6 }, ".family"],
    ];
    for (const [f, path] of cases)
      assert.throws(() => compileLb({ frontends: [f] }), (e: unknown) => e instanceof MembraneError && e.message.includes(path)); // prettier-ignore
  });

  test("IPv6 element bytes: 16-byte addresses in keys and values; garbage is not encoded", () => {
    const now = compileLb({ frontends: [{ ip: "fd00:96::2", proto: 6, port: 80, backends: [{ ip: "fd00:1::5", port: 8080 }] }] }); // prettier-ignore
    const ops = lbWireDelta(new Map(), now.elements) ?? [];
    const be6 = ops.find((o) => o.set === "be6");
    const key = Buffer.from(be6?.add[0]?.key ?? []);
    assert.equal(key.length, 28);
    assert.equal(key.subarray(0, 16).toString("hex"), "fd000096000000000000000000000002");
    assert.equal(key.readUInt8(16), 6);
    assert.equal(key.readUInt16BE(20), 80);
    assert.equal(Buffer.from(be6?.add[0]?.data ?? []).toString("hex"), "fd000001000000000000000000000005" + "1f900000"); // prettier-ignore
    const bad = new Map([["be6", new Map([["fd00:96::2 . tcp . 80 . 0", "10.1.0.5 . 8080"]])]]);
    assert.equal(lbWireDelta(new Map(), bad), undefined);
  });

  test("stored records: IPv6 addresses and dual-stack pairs read back; others refused naming the field", () => {
    const rec = {
      namespace: "default",
      name: "web",
      labels: {},
      type: "ClusterIP",
      algorithm: "random",
      ports: [],
    };
    const ok = { ...rec, clusterIP: "10.96.0.2", clusterIPs: ["10.96.0.2", "fd00:96::2"], ipFamilies: ["IPv4", "IPv6"], ipFamilyPolicy: "PreferDualStack" }; // prettier-ignore
    assert.deepEqual(readServiceRecord(JSON.stringify(ok), "default/web").clusterIPs, ok.clusterIPs);
    assert.throws(() => readServiceRecord(JSON.stringify({ ...ok, clusterIPs: ["fd00:96::2"] }), "default/web"), /service\.clusterIPs/); // prettier-ignore
    assert.throws(() => readServiceRecord(JSON.stringify({ ...rec, clusterIP: "fd00:96:0::2" }), "default/web"), /service\.clusterIP/); // prettier-ignore
    assert.throws(() => readServiceRecord(JSON.stringify({ ...ok, ipFamilies: ["IPv7"] }), "default/web"), /service\.ipFamilies/); // prettier-ignore
    const slice = { namespace: "default", name: "w-1", service: "web", ports: [], endpoints: [{ addresses: ["fd00:1::5"], ready: true, serving: true, terminating: false }] }; // prettier-ignore
    assert.equal(
      readSliceRecord(JSON.stringify(slice), "default/w-1").endpoints[0]?.addresses[0],
      "fd00:1::5",
    );
  });

  test("EndpointSlices of addressType IPv6: addresses of that family only; FQDN refused", () => {
    const slice = (type: string, addr: string): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: ${type}
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["${addr}"]}]
`;
    assert.equal(parseLbResources(slice("IPv6", "fd00:1::5"), "s.yaml").slices[0]?.endpoints[0]?.addresses[0], "fd00:1::5"); // prettier-ignore
    refusedAt(() => parseLbResources(slice("IPv6", "10.1.0.5"), "s.yaml"), "endpoints[0].addresses[0]");
    refusedAt(() => parseLbResources(slice("IPv4", "fd00:1::5"), "s.yaml"), "endpoints[0].addresses[0]");
    refusedAt(() => parseLbResources(slice("FQDN", "a.example"), "s.yaml"), "addressType");
  });
});
