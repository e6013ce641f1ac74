// Gateways' own addresses under least privilege (agent/gateway-addresses.ts; real etcd with
// authentication on, the roles of `membrane cluster etcd-setup`): a node's role may not write the
// Services' reservations, so its Gateways get no address. The refusal is said, not taken for a full
// pool: the error names the role, the etcd prefix and what to do; the Gateway's status says the
// same; nothing is written. Once the role is granted as the hint says, the address is reserved.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3, Range } from "etcd3";
import { pino } from "pino";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { etcdSetup } from "../../src/cluster/etcd-setup.js";
import { ClusterResourceStore } from "../../src/cluster/resource-store.js";
import { MembraneError } from "../../src/errors.js";
import { compileGateways } from "../../src/gateway/compile.js";
import { GatewayCertificates } from "../../src/gateway/certs.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { GatewayInputs } from "../../src/gateway/protocol.js";
import { worldOf } from "../../src/gateway/world.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { CLASS, gatewayYaml } from "../gateway/fixtures.js";

const logger = pino({ level: "silent" });
const GW = "infra/m17-lp";
const RESOURCES = CLASS + gatewayYaml("m17-lp", ["{name: http, port: 80, protocol: HTTP}"]);

/** The Programmed condition of the Gateway, from the inputs the agent sends, compiled as the gateway process does. */
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
  const certs = new GatewayCertificates("/nonexistent/m17-certs"); // no TLS listener reads it
  const c = compileGateways(worldOf(inputs, certs, "2026-01-01T00:00:00Z"));
  const p = c.status.gateways.get(`Gateway/${GW}`)?.conditions.find((x) => x.type === "Programmed");
  return `${p?.status}/${p?.reason}: ${p?.message}`;
}

describe("gateway addresses under least privilege (etcd auth on)", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  before(async () => {
    etcd = await startEtcd();
    const root = new Etcd3({ hosts: [etcd.endpoint] });
    try {
      await etcdSetup(root, {
        nodes: [{ name: "n1", password: "pw-n1" }],
        enableAuth: { rootPassword: "pw-root" },
      });
    } finally {
      root.close();
    }
  });
  after(async () => {
    await etcd?.stop();
  });

  test("the refusal names the role, the prefix and what to do, in the error and the status; granted as the hint says, the address is reserved", async () => {
    const kv = etcd.store({ auth: { username: "membrane-node-n1", password: "pw-n1" } });
    const own = new GatewayAddresses({
      // The agent's cluster-mode store: lb/ keys go to etcd under cluster/.
      store: new ClusterResourceStore(kv, kv),
      logger,
      netns: "m17-n1-gateway",
      pool: { loadBalancerPool: "192.0.2.0/30" },
      cluster: {
        node: "n1",
        storePrefix: kv.prefix,
        grantLease: (t, onLost) => kv.grantLease(t, onLost),
        leaseTtlSeconds: 30,
      },
    });
    try {
      const rev = await kv.revision();
      const err = await own.reserve([GW]).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof MembraneError, `a refusal, not ${String(err)}`);
      assert.equal(err.code, "CLUSTER_UNAVAILABLE");
      assert.match(err.message, /infra\/m17-lp/);
      assert.match(
        err.message,
        /etcd role membrane-node-n1 may not write membrane\/cluster\/lb\/alloc\/ip\//,
      );
      assert.match(err.message, /membrane cluster etcd-setup/);
      assert.match(err.message, /spec\.addresses.*--lb-pool/);
      assert.equal(await kv.revision(), rev, "nothing written");
      assert.deepEqual(own.assigned([GW]), { [GW]: [] });
      const status = programmed(own);
      assert.match(status, /^False\/AddressNotAssigned: /);
      assert.match(status, /membrane-node-n1 may not write membrane\/cluster\/lb\/alloc\/ip\//);
      assert.doesNotMatch(status, /is free/, "not said to be a full pool");

      // Granted as the hint says (etcdctl role grant-permission --prefix <role> readwrite <prefix>).
      const m = /grant-permission --prefix (\S+) readwrite (\S+)$/.exec(err.hint ?? "");
      assert.ok(m, `a grant command in the hint: ${err.hint}`);
      const root = new Etcd3({ hosts: [etcd.endpoint], auth: { username: "root", password: "pw-root" } });
      try {
        await root.role(m[1] ?? "").grant({ permission: "Readwrite", range: Range.prefix(m[2] ?? "") });
      } finally {
        root.close();
      }
      assert.deepEqual(await own.reserve([GW]), ["192.0.2.2"]);
      assert.equal(own.refused, undefined);
      assert.equal((await kv.get("cluster/lb/alloc/ip/192.0.2.2"))?.value, `gateway n1 m17-n1-gateway ${GW}`);
      assert.match(programmed(own), /^True\/Programmed: served on 192\.0\.2\.2/);
    } finally {
      await own.stop();
      await kv.close();
    }
  });
});
