// Least privilege in etcd (src/cluster/etcd-setup.ts) against a real etcd with authentication on:
// node A's credentials run a whole cluster session (lease, pod CIDR claim, node record, watch) but
// cannot write node B's node record, pod CIDR, ipcache entries or identity claims, nor policies;
// the admin writes policies and nothing of a node's.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ClusterSession } from "../../src/cluster/session.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { ADMIN_AUTH, ADMIN_PASSWORD, startAuthEtcd, type AuthEtcd } from "../support/etcd-auth.js";

const logger = pino({ level: "silent" });

describe("least privilege in the cluster store", { skip: skipWithoutEtcd() }, () => {
  let ae: AuthEtcd;
  let etcd: EtcdHandle;
  before(async () => {
    ae = await startAuthEtcd({ nodes: ["a", "b"] });
    etcd = ae.etcd;
    assert.deepEqual(ae.done, [
      "membrane-node-a",
      "membrane-node-b",
      "membrane-admin",
      "root",
      "auth enabled",
    ]);
  });
  after(async () => {
    await ae?.stop();
  });

  const denied = async (p: Promise<unknown>, what: string): Promise<void> => {
    await assert.rejects(p, /permission denied/i, what);
  };

  it("node A's credentials cannot write B's keys or policies; B's keys are unchanged", async () => {
    const b = etcd.store({ auth: { username: "membrane-node-b", password: "pw-b" } });
    const a = etcd.store({ auth: { username: "membrane-node-a", password: "pw-a" } });
    try {
      await b.put("cluster/nodes/b", '{"v":1,"name":"b"}');
      await b.put("cluster/ipcache/b/10.0.1.5", '{"v":1,"identity":1001}');
      await b.put("cluster/identities/b/1001", '{"v":1,"labels":["k8s:app=b"]}');
      await b.put("cluster/podcidrs/b", '{"v":1,"ipv4":"10.0.1.0/24","allocated":true}');
      const rev = await a.revision();
      await denied(a.put("cluster/nodes/b", "{}"), "B's node record");
      await denied(a.put("cluster/podcidrs/b", "{}"), "B's pod CIDR claim");
      await denied(a.put("cluster/ipcache/b/10.0.1.5", "{}"), "B's endpoint");
      await denied(a.put("cluster/ipcache/b/10.0.1.6", "{}"), "a new endpoint under B");
      await denied(a.put("cluster/identities/b/1001", "{}"), "B's identity claim");
      await denied(a.delete("cluster/identities/b/1001"), "deleting B's identity claim");
      await denied(a.put("cluster/policies/default/x", "{}"), "a policy");
      await denied(a.put("cluster/ipcache/ab/1.2.3.4", "{}"), "a node whose name starts with a");
      await denied(
        a.txn({ compare: [], ops: [{ type: "put", key: "cluster/ipcache/b/10.0.1.7", value: "{}" }] }),
        "B's endpoint in a txn",
      );
      assert.equal(await a.revision(), rev, "nothing changed");
      // A reads everything, and writes its own keys.
      assert.equal((await a.get("cluster/ipcache/b/10.0.1.5"))?.value, '{"v":1,"identity":1001}');
      await a.put("cluster/ipcache/a/10.0.0.5", "{}");
      await a.put("cluster/identities/a/1001", "{}");
      await a.put("cluster/status/a", "{}");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("a node's whole cluster session runs with its own credentials only", async () => {
    const s = await ClusterSession.open(
      {
        endpoints: [etcd.endpoint],
        node: "a",
        nodeIp: { ipv4: "192.0.2.1" },
        labels: {},
        auth: { username: "membrane-node-a", password: "pw-a" },
        podCidrs: { clusterCidr: { ipv4: "10.0.0.0/16" } },
        leaseTtlSeconds: 5,
        tunnel: "native",
      },
      logger,
    );
    try {
      const reg = await s.start();
      assert.ok(reg.alive("a"));
      assert.notEqual(s.podCidrs.ipv4, "10.0.1.0/24", "B's claim is avoided");
    } finally {
      await s.close({ revoke: true });
    }
  });

  it("the admin writes policies but no node's keys", async () => {
    const adm = etcd.store({ auth: ADMIN_AUTH });
    try {
      await adm.put("cluster/policies/default/p", "{}");
      await adm.put("cluster/namespaces/default", "{}");
      await adm.put("cluster/services/default/s", "{}");
      await denied(adm.put("cluster/ipcache/b/10.0.1.5", "{}"), "an endpoint");
      await denied(adm.put("cluster/nodes/a", "{}"), "a node record");
    } finally {
      await adm.close();
    }
  });

  it("membrane apply --cluster-store writes with the admin's password file; a node's is refused and writes nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "membrane-lp-apply-"));
    try {
      const bin = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));
      const url = etcd.endpoint.replace("http://", "etcd://");
      writeFileSync(join(dir, "admin.password"), `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
      writeFileSync(join(dir, "a.password"), "pw-a\n", { mode: 0o600 });
      writeFileSync(
        join(dir, "p.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: lp-apply, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: x}}\n  ingress: [{}]\n",
      );
      const apply = (user: string, pwFile: string): ReturnType<typeof spawnSync> =>
        spawnSync(
          process.execPath,
          [
            bin,
            "apply",
            "-f",
            join(dir, "p.yaml"),
            "--cluster-store",
            url,
            "--etcd-username",
            user,
            "--etcd-password-file",
            pwFile,
          ],
          { encoding: "utf8", timeout: 60_000 },
        );
      const adm = etcd.store({ auth: ADMIN_AUTH });
      try {
        const before = await adm.revision();
        const denied = apply("membrane-node-a", join(dir, "a.password"));
        assert.notEqual(denied.status, 0);
        assert.match(String(denied.stderr), /permission denied/i);
        assert.doesNotMatch(
          String(denied.stdout) + String(denied.stderr),
          /pw-a/,
          "no password in the output",
        );
        assert.equal(await adm.revision(), before, "nothing written");
        const r = apply("membrane-admin", join(dir, "admin.password"));
        assert.equal(r.status, 0, String(r.stderr));
        assert.match(String(r.stdout), /created/);
        assert.ok((await adm.list("cluster/policies/")).kvs.some((kv) => kv.key.endsWith("/lp-apply")));
        const half = spawnSync(
          process.execPath,
          [
            bin,
            "apply",
            "-f",
            join(dir, "p.yaml"),
            "--cluster-store",
            url,
            "--etcd-username",
            "membrane-admin",
          ],
          { encoding: "utf8", timeout: 60_000 },
        );
        assert.notEqual(half.status, 0);
        assert.match(half.stderr, /--etcd-username and --etcd-password-file together/);
      } finally {
        await adm.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("membrane cluster etcd-setup", { skip: skipWithoutEtcd() }, () => {
  it("creates a node user whose generated password writes only its own keys, and turns auth on", async () => {
    const etcd = await startEtcd();
    const out = mkdtempSync(join(tmpdir(), "membrane-setup-"));
    try {
      const bin = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));
      const url = etcd.endpoint.replace("http://", "etcd://");
      const r = spawnSync(
        process.execPath,
        [
          bin,
          "cluster",
          "etcd-setup",
          "--cluster-store",
          url,
          "--node",
          "n1",
          "--admin",
          "--enable-auth",
          "--out-dir",
          out,
        ],
        { encoding: "utf8", timeout: 60_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /user membrane-node-n1: password in .*membrane-node-n1\.password/);
      assert.match(r.stdout, /auth enabled/);
      assert.doesNotMatch(
        r.stdout + r.stderr,
        new RegExp(readFileSync(join(out, "root.password"), "utf8").trim()),
      );
      assert.equal(statSync(join(out, "membrane-node-n1.password")).mode & 0o777, 0o600);
      const pw = readFileSync(join(out, "membrane-node-n1.password"), "utf8").trim();
      const n1 = etcd.store({ auth: { username: "membrane-node-n1", password: pw } });
      const anon = etcd.store();
      try {
        await n1.put("cluster/ipcache/n1/10.0.0.1", "{}");
        await assert.rejects(n1.put("cluster/ipcache/n2/10.0.0.2", "{}"), /permission denied/i);
        await assert.rejects(
          anon.put("cluster/ipcache/n1/10.0.0.3", "{}"),
          /user name is empty|permission denied|invalid auth/i,
        );
      } finally {
        await n1.close();
        await anon.close();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
      await etcd.stop();
    }
  });

  it("never writes a password through a file or symbolic link already in --out-dir", async () => {
    const etcd = await startEtcd();
    const out = mkdtempSync(join(tmpdir(), "membrane-setup-"));
    const elsewhere = join(mkdtempSync(join(tmpdir(), "membrane-setup-target-")), "readable");
    writeFileSync(elsewhere, "untouched\n", { mode: 0o644 });
    symlinkSync(elsewhere, join(out, "membrane-node-n1.password"));
    try {
      const bin = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));
      const url = etcd.endpoint.replace("http://", "etcd://");
      const r = spawnSync(
        process.execPath,
        [bin, "cluster", "etcd-setup", "--cluster-store", url, "--node", "n1", "--out-dir", out],
        { encoding: "utf8", timeout: 60_000 },
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /Cannot write .*membrane-node-n1\.password/);
      assert.equal(readFileSync(elsewhere, "utf8"), "untouched\n", "the link's target keeps its content");
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(dirname(elsewhere), { recursive: true, force: true });
      await etcd.stop();
    }
  });
});
