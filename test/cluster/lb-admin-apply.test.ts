// Services in cluster mode under least privilege (real etcd with auth on, the roles of the real
// etcdSetup): `membrane apply -f --cluster-store` with the admin's password file allocates and
// writes a LoadBalancer Service, its reservations and its EndpointSlice, from the ranges the live
// nodes publish in their records, skipping an address a node's Gateway holds; a node's credentials
// are refused and write nothing; a file refused whole (an address another Service holds) leaves its
// slices as they were; nodes publishing different ranges, or none, are refused unless the flags
// say the ranges; delete removes the Service and its reservations.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { ADMIN_PASSWORD, nodePassword, startAuthEtcd } from "../support/etcd-auth.js";

const FILE = `apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-lb-1, namespace: default, labels: {kubernetes.io/service-name: web-lb}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: ["10.0.0.5"]}]
`;

test(
  "membrane apply --cluster-store as membrane-admin: a LoadBalancer Service with its addresses and slice; a node is refused",
  { skip: skipWithoutEtcd() },
  async () => {
    const ae = await startAuthEtcd({ nodes: ["n1", "n2"] });
    const etcd = ae.etcd;
    const dir = mkdtempSync(join(tmpdir(), "e18-lb-admin-"));
    const adm = ae.admin();
    const n1 = ae.node("n1");
    const n2 = ae.node("n2");
    /** A node's record as its agent publishes it, with the service ranges it runs with. */
    const publish = (kv: typeof n1, node: string, pool: string): Promise<number> =>
      kv.put(`cluster/nodes/${node}`, JSON.stringify({ v: 1, name: node, addresses: {}, podCidrs: [], labels: {}, routing: "native", bootId: "b", startedAt: "2026-01-01T00:00:00Z", lb: { serviceCidr: "10.96.0.0/16", loadBalancerPool: pool, nodePortRange: [30000, 32767] } })); // prettier-ignore
    try {
      writeFileSync(join(dir, "admin.password"), `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
      writeFileSync(join(dir, "n1.password"), `${nodePassword("n1")}\n`, { mode: 0o600 });
      writeFileSync(join(dir, "lb.yaml"), FILE);
      const bin = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));
      const url = etcd.endpoint.replace("http://", "etcd://");
      const membrane = (...args: string[]): ReturnType<typeof spawnSync> =>
        spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 60_000 });
      const as = (user: string, pw: string, op = "apply", file = "lb.yaml", ...flags: string[]): ReturnType<typeof spawnSync> => // prettier-ignore
        membrane(op, "-f", join(dir, file), "--cluster-store", url, "--etcd-username", user, "--etcd-password-file", join(dir, pw), ...flags); // prettier-ignore

      // Node n1's Gateway holds the pool's first address.
      await n1.put("cluster/lb/gateways/n1/192.0.2.2", "gateway n1 e18-n1-gateway infra/gw");
      const before = await adm.revision();
      const denied = as("membrane-node-n1", "n1.password", "apply", "lb.yaml", "--lb-pool", "192.0.2.0/29");
      assert.notEqual(denied.status, 0);
      assert.match(String(denied.stderr), /as membrane-node-n1: etcd says permission denied on membrane\/cluster\/lb\/services\/.*only membrane-admin may write them/); // prettier-ignore
      assert.match(String(denied.stderr), /etcdctl role grant-permission --prefix membrane-admin readwrite membrane\/cluster\/lb\/alloc\//); // prettier-ignore
      assert.equal(await adm.revision(), before, "nothing written");
      const unknown = as("membrane-admin", "admin.password");
      assert.notEqual(unknown.status, 0);
      assert.match(String(unknown.stderr), /no live node publishes the service ranges/);
      assert.equal(await adm.revision(), before, "nothing written");

      await publish(n1, "n1", "192.0.2.0/29"); // allocated from n1's ranges
      const ok = as("membrane-admin", "admin.password");
      assert.equal(ok.status, 0, String(ok.stderr));
      assert.match(String(ok.stdout), /service\/default\/web-lb\s+created/);
      assert.match(String(ok.stdout), /endpointslice\/default\/web-lb-1\s+created/);
      const svc = JSON.parse((await adm.get("cluster/lb/services/default/web-lb"))?.value ?? "{}") as {
        loadBalancerIPs?: string[];
        loadBalancerIP?: string;
        clusterIP?: string;
        ports?: { nodePort?: number }[];
      };
      const lb = svc.loadBalancerIPs?.[0] ?? svc.loadBalancerIP;
      assert.equal(lb, "192.0.2.3", "the Gateway's address skipped");
      assert.equal((await adm.get(`cluster/lb/alloc/ip/${lb}`))?.value, "default/web-lb");
      assert.equal((await adm.get(`cluster/lb/alloc/ip/${svc.clusterIP}`))?.value, "default/web-lb");
      assert.equal((await adm.get(`cluster/lb/alloc/node-port/TCP/${svc.ports?.[0]?.nodePort}`))?.value, "default/web-lb"); // prettier-ignore
      assert.ok(await adm.get("cluster/lb/slices/default/web-lb-1"));
      const again = as("membrane-admin", "admin.password");
      assert.match(String(again.stdout), /service\/default\/web-lb\s+unchanged/);

      // Refused whole: another Service asks for web-lb's ClusterIP; its slice is not written.
      writeFileSync(join(dir, "clash.yaml"), FILE.replaceAll("web-lb", "clash").replace("type: LoadBalancer", `clusterIP: ${svc.clusterIP}`)); // prettier-ignore
      const clash = as("membrane-admin", "admin.password", "apply", "clash.yaml");
      assert.notEqual(clash.status, 0);
      assert.match(
        String(clash.stderr),
        /spec\.clusterIP .*already allocated \(to service default\/web-lb\)/,
      );
      assert.equal(await adm.get("cluster/lb/slices/default/clash-1"), undefined, "the slice put back");

      await publish(n2, "n2", "198.51.100.0/24");
      const differ = as("membrane-admin", "admin.password");
      assert.notEqual(differ.status, 0);
      assert.match(String(differ.stderr), /different service ranges \(n1: .*--lb-pool 192\.0\.2\.0\/29.*; n2: .*--lb-pool 198\.51\.100\.0\/24/); // prettier-ignore
      const del = as("membrane-admin", "admin.password", "delete", "lb.yaml", "--lb-pool", "192.0.2.0/29"); // the flags win
      assert.equal(del.status, 0, String(del.stderr));
      assert.deepEqual((await adm.list("cluster/lb/alloc/")).kvs, [], "its reservations released");
      assert.equal(await adm.get("cluster/lb/slices/default/web-lb-1"), undefined);

      const usage = membrane("apply", "-f", join(dir, "lb.yaml"), "--lb-pool", "192.0.2.0/29");
      assert.notEqual(usage.status, 0);
      assert.match(String(usage.stderr), /Cannot use --lb-pool without --cluster-store/);
      writeFileSync(join(dir, "p.yaml"), "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n"); // prettier-ignore
      const policy = as(
        "membrane-admin",
        "admin.password",
        "apply",
        "p.yaml",
        "--node-port-range",
        "30000-30100",
      );
      assert.notEqual(policy.status, 0);
      assert.match(
        String(policy.stderr),
        /Cannot use --node-port-range with this file: it gives the ranges of Services/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await ae.stop();
    }
  },
);
