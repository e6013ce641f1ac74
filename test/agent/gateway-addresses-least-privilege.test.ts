// Gateways' own addresses and Services' under least privilege (real etcd with authentication on, the
// roles of the real etcdSetup): each node reserves its Gateways' addresses under its own key
// (cluster/lb/gateways/<node>/), the admin writes the Services and their reservations. Two nodes'
// Gateways never get one address, nor a Service a Gateway's, also when they race (the compares of
// lb/reservations.ts); a node can neither overwrite nor delete another node's reservation or a
// Service's (etcd refuses it); a role made before the gateway grant is refused with the grant to run.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Range } from "etcd3";
import { pino } from "pino";
import { writeServices } from "../../src/agent/controllers/lb-reserve.js";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { ClusterResourceStore } from "../../src/cluster/resource-store.js";
import { MembraneError } from "../../src/errors.js";
import { GatewayCertificates } from "../../src/gateway/certs.js";
import { compileGateways } from "../../src/gateway/compile.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { worldOf } from "../../src/gateway/world.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { parseLbResources } from "../../src/lb/parse.js";
import type { LbConfig } from "../../src/lb/types.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import type { Store } from "../../src/store/store.js";
import { CLASS, gatewayYaml } from "../gateway/fixtures.js";
import { startAuthEtcd, type AuthEtcd } from "../support/etcd-auth.js";

const logger = pino({ level: "silent" });
// A /29 gives five addresses, .2 to .6 (lb/allocate.ts skips the network, the first host and the last).
const POOL = "192.0.2.0/29";
const CFG: LbConfig = { serviceCidr: "10.96.0.0/16", loadBalancerPool: POOL, nodePortRange: [30000, 32767] };
const lbService = (name: string): string =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: default}\nspec:\n  type: LoadBalancer\n  selector: {app: ${name}}\n  ports: [{port: 80}]\n`;

const GW = "infra/e18-lp";
const RESOURCES = CLASS + gatewayYaml("e18-lp", ["{name: http, port: 80, protocol: HTTP}"]);

/** The Programmed condition of GW, from the inputs the agent sends, compiled as the gateway process does. */
function programmed(own: GatewayAddresses): string {
  const refused = own.refused;
  const inputs: GatewayInputs = {
    resources: parseGatewayResources(RESOURCES, "test.yaml"),
    services: {},
    namespaceLabels: {},
    addresses: ["10.0.0.9"],
    gatewayAddresses: own.assigned([GW]) ?? {},
    ...(refused !== undefined ? { gatewayAddressesRefused: refused } : {}),
  };
  const certs = new GatewayCertificates("/nonexistent/e18-certs"); // no TLS listener reads it
  const c = compileGateways(worldOf(inputs, certs, "2026-01-01T00:00:00Z"));
  const p = c.status.gateways.get(`Gateway/${GW}`)?.conditions.find((x) => x.type === "Programmed");
  return `${p?.status}/${p?.reason}: ${p?.message}`;
}

/** `s`, whose first transaction first lets `hook` run (another writer between its read and its write). */
function raced(s: Store, hook: () => Promise<unknown>): Store {
  let first = true;
  return {
    get: (k) => s.get(k),
    list: (p) => s.list(p),
    put: (k, v) => s.put(k, v),
    delete: (k) => s.delete(k),
    txn: async (r) => {
      if (first) {
        first = false;
        await hook();
      }
      return s.txn(r);
    },
    watch: (p, rev, cb, o) => s.watch(p, rev, cb, o),
    revision: () => s.revision(),
    close: () => s.close(),
  };
}

describe("LoadBalancer addresses under least privilege (etcd auth on)", { skip: skipWithoutEtcd() }, () => {
  let ae: AuthEtcd;
  /** A node's GatewayAddresses as the agent makes it in cluster mode (lb/ keys in etcd under cluster/). */
  const gateways = (
    node: string,
    kv: EtcdStore,
    wrap = (s: Store): Store => s,
    netns = `e18-${node}-gateway`,
  ): GatewayAddresses =>
    // prettier-ignore
    new GatewayAddresses({
      store: wrap(new ClusterResourceStore(kv, kv)),
      logger,
      netns,
      pool: { loadBalancerPool: POOL },
      cluster: { node, storePrefix: kv.prefix, grantLease: (t, l) => kv.grantLease(t, l), leaseTtlSeconds: 30 },
    });
  const admin = (): Store => {
    const kv = ae.admin();
    return new ClusterResourceStore(kv, kv);
  };
  const apply = async (store: Store, name: string): Promise<string | undefined> => {
    const services = parseLbResources(lbService(name), `${name}.yaml`).services;
    const w = await writeServices({ store, logger, cfg: CFG, op: "apply", services });
    return (
      w.get(`default/${name}`)?.now?.loadBalancerIPs?.[0] ?? w.get(`default/${name}`)?.now?.loadBalancerIP
    );
  };
  const clear = async (): Promise<void> => {
    const r = ae.root();
    try {
      await r.delete().prefix("membrane/cluster/lb/");
    } finally {
      r.close();
    }
  };

  before(async () => {
    ae = await startAuthEtcd({ nodes: ["n1", "n2", "n3"] });
  });
  after(async () => {
    await ae?.stop();
  });

  test("two nodes' Gateways get different addresses under their own keys, and a Service none of theirs", async () => {
    await clear();
    const kv1 = ae.node("n1");
    const n1 = gateways("n1", kv1);
    const n2 = gateways("n2", ae.node("n2"));
    try {
      assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.2"]);
      assert.deepEqual(await n2.reserve(["infra/b"]), ["192.0.2.3"]);
      assert.equal(
        (await kv1.get("cluster/lb/gateways/n1/192.0.2.2"))?.value,
        "gateway n1 e18-n1-gateway infra/a",
      );
      assert.equal(
        (await kv1.get("cluster/lb/gateways/n2/192.0.2.3"))?.value,
        "gateway n2 e18-n2-gateway infra/b",
      );
      assert.equal(await apply(admin(), "web"), "192.0.2.4", "the Service skips the Gateways' addresses");
      assert.equal((await kv1.get("cluster/lb/alloc/ip/192.0.2.4"))?.value, "default/web");
      assert.deepEqual(await n1.reserve(["infra/c"]), ["192.0.2.5"], "and a Gateway the Service's");
    } finally {
      await n1.stop();
      await n2.stop();
    }
  });

  test("racing for one address: the second writer's transaction fails and it takes another (Gateway/Gateway, Service/Gateway, Gateway/Service)", async () => {
    await clear();
    const n2 = gateways("n2", ae.node("n2"));
    // n1 read .2 as free; n2 takes .2 before n1 writes.
    const n1 = gateways("n1", ae.node("n1"), (s) => raced(s, () => n2.reserve(["infra/b"])));
    const n3 = gateways("n3", ae.node("n3"));
    try {
      assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.3"]);
      assert.deepEqual(n2.assigned(["infra/b"]), { "infra/b": ["192.0.2.2"] });
      // The admin read .4 as free; n3's Gateway takes .4 before the Service is written.
      assert.equal(
        await apply(
          raced(admin(), () => n3.reserve(["infra/c"])),
          "web",
        ),
        "192.0.2.5",
      );
      assert.deepEqual(n3.assigned(["infra/c"]), { "infra/c": ["192.0.2.4"] });
      // n3 read .6 as free; a Service takes .6 before n3 writes: the pool is then full for it. (Another
      // gateway namespace: its load() has nothing to put on its lease, so its first write is the reservation.)
      const n3b = gateways("n3", ae.node("n3"), (s) => raced(s, () => apply(admin(), "api")), "e18-n3-other"); // prettier-ignore
      try {
        assert.deepEqual(await n3b.reserve(["infra/d"]), []);
      } finally {
        await n3b.stop();
      }
      const held = new Map<string, string>();
      for (const kv of (await ae.admin().list("cluster/lb/")).kvs) {
        const ip = /\/(192\.0\.2\.\d+)$/.exec(kv.key)?.[1];
        if (ip === undefined || kv.key.includes("/lb/services/")) continue;
        assert.equal(held.get(ip), undefined, `${ip} held twice: ${held.get(ip)} and ${kv.key}`);
        held.set(ip, kv.key);
      }
      assert.equal(held.size, 5, [...held.values()].join(", "));
    } finally {
      await n1.stop();
      await n2.stop();
      await n3.stop();
    }
  });

  test("a node can neither overwrite nor delete another node's reservation or a Service's: etcd refuses it", async () => {
    await clear();
    const kv1 = ae.node("n1");
    const n2 = gateways("n2", ae.node("n2"));
    try {
      assert.deepEqual(await n2.reserve(["infra/b"]), ["192.0.2.2"]);
      assert.equal(await apply(admin(), "web"), "192.0.2.3");
      const rev = await kv1.revision();
      const denied = (p: Promise<unknown>, what: string): Promise<void> =>
        assert.rejects(p, /permission denied/i, what);
      await denied(kv1.put("cluster/lb/gateways/n2/192.0.2.2", "gateway n1 x infra/a"), "overwrite n2's");
      await denied(kv1.delete("cluster/lb/gateways/n2/192.0.2.2"), "delete n2's");
      await denied(kv1.put("cluster/lb/gateways/n2/192.0.2.4", "x"), "write under n2's prefix");
      await denied(kv1.delete("cluster/lb/alloc/ip/192.0.2.3"), "delete a Service's address");
      await denied(kv1.put("cluster/lb/alloc/ip/192.0.2.5", "default/x"), "reserve as a Service");
      await denied(kv1.put("cluster/lb/services/default/web", "{}"), "rewrite a Service");
      await denied(kv1.put("cluster/lb/gateways/n10/192.0.2.5", "x"), "a node whose name starts with n1");
      await denied(ae.admin().put("cluster/lb/gateways/n1/192.0.2.5", "x"), "the admin, a node's");
      assert.equal(await kv1.revision(), rev, "nothing changed");
      await kv1.put("cluster/lb/gateways/n1/192.0.2.6", "gateway n1 x infra/own"); // its own: allowed
    } finally {
      await n2.stop();
    }
  });

  test("a role made before the gateway grant: the refusal names the role, its prefix and the grant; granted as the hint says, the address is reserved", async () => {
    await clear();
    const r = ae.root();
    try {
      await r.role("membrane-node-n3").revoke({ permission: "Readwrite", range: Range.prefix("membrane/cluster/lb/gateways/n3/") }); // prettier-ignore
    } finally {
      r.close();
    }
    const kv = ae.node("n3");
    const n3 = gateways("n3", kv);
    try {
      const rev = await kv.revision();
      const err = await n3.reserve([GW]).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof MembraneError, `a refusal, not ${String(err)}`);
      assert.equal(err.code, "CLUSTER_UNAVAILABLE");
      assert.match(
        err.message,
        /infra\/e18-lp: .*etcd role membrane-node-n3 may not write membrane\/cluster\/lb\/gateways\/n3\//,
      );
      assert.match(n3.refused ?? "", /spec\.addresses.*--lb-pool/);
      const status = programmed(n3);
      assert.match(status, /^False\/AddressNotAssigned: /);
      assert.match(status, /membrane-node-n3 may not write membrane\/cluster\/lb\/gateways\/n3\//);
      assert.doesNotMatch(status, /is free/, "not said to be a full pool");
      assert.equal(await kv.revision(), rev, "nothing written");
      const m = /grant-permission --prefix (\S+) readwrite (\S+)$/.exec(err.hint ?? "");
      assert.ok(m, `a grant command in the hint: ${err.hint}`);
      const g = ae.root();
      try {
        await g.role(m[1] ?? "").grant({ permission: "Readwrite", range: Range.prefix(m[2] ?? "") });
      } finally {
        g.close();
      }
      assert.deepEqual(await n3.reserve([GW]), ["192.0.2.2"]);
      assert.equal(n3.refused, undefined);
      assert.match(programmed(n3), /^True\/Programmed: served on 192\.0\.2\.2/);
    } finally {
      await n3.stop();
    }
  });
});
