/**
 * The pure parts of two Service features: LoadBalancer addresses from an IPv6 (or dual-stack)
 * --lb-pool, and spec.healthCheckNodePort of an externalTrafficPolicy Local LoadBalancer
 * (allocated as the apiserver does, reserved cluster-wide, reported per node as kube-proxy does).
 * Real packets: lb-health.test.ts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { allocate } from "../../src/lb/allocate.js";
import { parseLbFlags } from "../../src/lb/config.js";
import { desiredLb } from "../../src/lb/desired.js";
import { healthAnswer, isHealthSync } from "../../src/lb/health-answer.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { readServiceRecord } from "../../src/lb/record.js";
import { inUseOf, reservationKeys } from "../../src/lb/reservations.js";
import type { LbService } from "../../src/lb/types.js";
import { serviceRows } from "../../src/cli/commands/apply-lb.js";

const lb = (extra: string): string => `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
${extra}`;

const none = { ips: new Map<string, string>(), nodePorts: new Map<string, string>() };
const parse = (text: string): LbService => parseLbResources(text, "web.yaml").services[0] as LbService;
const DUAL = parseLbFlags({
  serviceCidr: "10.96.0.0/16,fd00:96::/112",
  lbPool: "192.0.2.0/28,2001:db8:5::/124",
  nodePortRange: "30000-30010",
});
const refusedAt = (f: () => unknown, path: string, says: RegExp): void => {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof MembraneError, String(e));
    const paths = [e.location?.path, ...e.issues.map((i) => i.path)].join(" ");
    assert.ok(paths.includes(path), `${path} not in ${paths}: ${e.message}`);
    assert.match(e.message + e.issues.map((i) => i.message).join(" "), says);
    return true;
  });
};

describe("LoadBalancer addresses from an IPv6 or dual-stack pool (pure)", () => {
  test("IPv6 single stack gets an IPv6 address; dual-stack one of each, primary first; the frontends follow", () => {
    const six = allocate(parse(lb("  ipFamilies: [IPv6]\n")), undefined, none, DUAL);
    assert.equal(six.loadBalancerIP, "2001:db8:5::2");
    assert.equal(six.loadBalancerIPs, undefined);
    const dual = allocate(parse(lb("  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n")), undefined, none, DUAL); // prettier-ignore
    assert.deepEqual(dual.loadBalancerIPs, ["2001:db8:5::2", "192.0.2.2"]);
    assert.equal(dual.loadBalancerIP, "2001:db8:5::2");
    const d = desiredLb([dual], [{ namespace: "shop", labels: { app: "web" }, ips: ["10.210.0.5", "fd00:210::5"] }], []); // prettier-ignore
    const at = (ip: string): string[] =>
      d.state.frontends.filter((f) => f.ip === ip).flatMap((f) => f.backends.map((b) => b.ip));
    assert.deepEqual(at("2001:db8:5::2"), ["fd00:210::5"], "the IPv6 address balances to IPv6 backends");
    assert.deepEqual(at("192.0.2.2"), ["10.210.0.5"]);
    assert.equal(d.views[0]?.externalIP, "2001:db8:5::2,192.0.2.2");
    // Applied again (the stored record as `previous`): the same addresses, not the next free ones.
    const again = allocate(parse(lb("  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n")), dual, inUseOf([dual], []), DUAL); // prettier-ignore
    assert.deepEqual(again.loadBalancerIPs, dual.loadBalancerIPs);
    // Another service skips what the first holds (reserved cluster-wide).
    const other = allocate({ ...parse(lb("  ipFamilies: [IPv6]\n")), name: "other" }, undefined, inUseOf([dual], []), DUAL); // prettier-ignore
    assert.equal(other.loadBalancerIP, "2001:db8:5::3");
    assert.ok(reservationKeys(dual).includes("lb/alloc/ip/2001:db8:5::2"));
    assert.ok(reservationKeys(dual).includes("lb/alloc/ip/192.0.2.2"));
  });

  test("a family without a pool stays pending; an IPv4-only pool still serves IPv4 services", () => {
    const v4pool = parseLbFlags({ serviceCidr: "10.96.0.0/16,fd00:96::/112", lbPool: "192.0.2.0/28" });
    assert.equal(allocate(parse(lb("  ipFamilies: [IPv6]\n")), undefined, none, v4pool).loadBalancerIP, undefined); // prettier-ignore
    const dual = allocate(parse(lb("  ipFamilyPolicy: PreferDualStack\n")), undefined, none, v4pool);
    assert.equal(dual.loadBalancerIP, "192.0.2.2");
    assert.equal(dual.loadBalancerIPs, undefined);
    const view = desiredLb([allocate(parse(lb("  ipFamilies: [IPv6]\n")), undefined, none, v4pool)], [], []).views[0]; // prettier-ignore
    assert.equal(view?.externalIP, "<pending>");
  });

  test("stored records: a dual pair reads back; a pair of one family or not led by loadBalancerIP is refused, naming the field", () => {
    const dual = allocate(parse(lb("  ipFamilyPolicy: RequireDualStack\n")), undefined, none, DUAL);
    assert.deepEqual(readServiceRecord(JSON.stringify(dual), "shop/web"), dual);
    for (const bad of [["192.0.2.2", "192.0.2.3"], ["fd00::1", "192.0.2.2"], ["192.0.2.2"], "192.0.2.2"])
      assert.throws(
        () => readServiceRecord(JSON.stringify({ ...dual, loadBalancerIPs: bad }), "shop/web"),
        /service\.loadBalancerIPs/,
      );
  });
});

describe("healthCheckNodePort (pure)", () => {
  const local = lb("  externalTrafficPolicy: Local\n");

  test("allocated from the node port range, apart from the service's NodePorts; kept when applied again; reserved as TCP", () => {
    const a = allocate(parse(local), undefined, none, DUAL);
    assert.equal(a.ports[0]?.nodePort, 30000);
    assert.equal(a.healthCheckNodePort, 30001);
    assert.ok(reservationKeys(a).includes("lb/alloc/node-port/TCP/30001"));
    const again = allocate(parse(local), a, inUseOf([a], []), DUAL);
    assert.equal(again.healthCheckNodePort, 30001);
    const given = allocate(parse(local + "  healthCheckNodePort: 30009\n"), undefined, none, DUAL);
    assert.equal(given.healthCheckNodePort, 30009);
    // Back to Cluster: the port is released (the apiserver clears it).
    assert.equal(allocate(parse(lb("")), a, inUseOf([a], []), DUAL).healthCheckNodePort, undefined);
  });

  test("refused with the field named: on a Cluster policy or another type, out of range, taken by another service or by a nodePort", () => {
    refusedAt(() => parse(lb("  healthCheckNodePort: 30005\n")), "spec.healthCheckNodePort", /externalTrafficPolicy is Local/); // prettier-ignore
    refusedAt(
      () => parse(lb("  healthCheckNodePort: 30005\n").replace("type: LoadBalancer", "type: NodePort\n  externalTrafficPolicy: Local")), // prettier-ignore
      "spec.healthCheckNodePort",
      /spec.type is LoadBalancer/,
    );
    refusedAt(() => parse(local + "  healthCheckNodePort: 70000\n"), "spec.healthCheckNodePort", /65535/);
    const used = { ips: new Map<string, string>(), nodePorts: new Map([["TCP/30009", "shop/other"]]) };
    refusedAt(() => allocate(parse(local + "  healthCheckNodePort: 30009\n"), undefined, used, DUAL), "spec.healthCheckNodePort", /service shop\/other/); // prettier-ignore
    const own = local.replace("targetPort: 8080}", "targetPort: 8080, nodePort: 30007}") + "  healthCheckNodePort: 30007\n"; // prettier-ignore
    refusedAt(() => allocate(parse(own), undefined, none, DUAL), "spec.healthCheckNodePort", /a nodePort of this service/); // prettier-ignore
    const full = parseLbFlags({ nodePortRange: "30000-30000" });
    refusedAt(() => allocate(parse(local), undefined, none, full), "spec.healthCheckNodePort", /full/);
  });

  test("the view counts this node's ready backends (a dual-stack pod once); get services shows port and count", () => {
    const a = allocate(parse(local.replace("type: LoadBalancer", "type: LoadBalancer\n  ipFamilyPolicy: PreferDualStack")), undefined, none, DUAL); // prettier-ignore
    const pods = [
      { namespace: "shop", labels: { app: "web" }, ips: ["10.210.0.5", "fd00:210::5"] },
      { namespace: "shop", labels: { app: "web" }, ips: ["10.210.0.6"] },
      { namespace: "shop", labels: { app: "web" }, ips: ["10.77.0.9"] }, // another node's
    ];
    const isLocal = (ip: string): boolean => ip.startsWith("10.210.") || ip.startsWith("fd00:210:");
    const v = desiredLb([a], pods, [], isLocal).views[0];
    assert.equal(v?.healthCheckNodePort, a.healthCheckNodePort);
    assert.equal(v?.localEndpoints, 2);
    assert.equal(desiredLb([a], pods.slice(2), [], isLocal).views[0]?.localEndpoints, 0);
    const row = serviceRows(v ? [v] : [])[1]?.join(" ") ?? "";
    assert.match(row, new RegExp(`\\(health ${a.healthCheckNodePort ?? 0}/TCP: 2 local\\)`));
  });

  test("the answer is kube-proxy's: 200 with local backends, 503 without or when the table is not in place", () => {
    const c = { namespace: "shop", name: "web", port: 30001, localEndpoints: 2 };
    const ok = healthAnswer(c, true);
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), {
      service: { namespace: "shop", name: "web" },
      localEndpoints: 2,
      serviceProxyHealthy: true,
    });
    assert.equal(healthAnswer({ ...c, localEndpoints: 0 }, true).status, 503);
    assert.equal(healthAnswer(c, false).status, 503);
    // What the unprivileged process accepts over its IPC channel: well-formed syncs only.
    assert.equal(isHealthSync({ type: "sync", seq: 1, healthy: true, checks: [c] }), true);
    for (const bad of [
      null,
      { type: "sync", seq: 1, healthy: true, checks: [{ ...c, port: 0 }] },
      { type: "sync", seq: 1, healthy: "yes", checks: [] },
      { type: "sync", seq: 1, healthy: true, checks: [{ ...c, localEndpoints: -1 }] },
    ])
      // prettier-ignore
      assert.equal(isHealthSync(bad), false, JSON.stringify(bad));
  });
});
