// Pod CIDR claims (src/cluster/podcidr.ts) against a real etcd: several allocators at once get
// disjoint blocks; a restarted node keeps its block; --pod-cidr overlapping an earlier claim is
// refused naming the other node and changes nothing; the smallest createRevision wins.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { MembraneError } from "../../src/errors.js";
import { PodCidrAllocator, validatePodCidrConfig } from "../../src/cluster/podcidr.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const logger = pino({ level: "silent" });

describe("pod CIDR claims", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  let n = 0;
  const stores: EtcdStore[] = [];
  const kv = (prefix: string): EtcdStore => {
    const s = etcd.store({ prefix });
    stores.push(s);
    return s;
  };
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    for (const s of stores) await s.close();
    await etcd.stop();
  });

  it("12 nodes allocating at once get 12 disjoint blocks of the cluster CIDR", async () => {
    const prefix = `pc-${n++}/`;
    const cfg = { clusterCidr: { ipv4: "10.8.0.0/20", ipv6: "fd00:8::/104" }, maskSize4: 24 };
    const claims = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        new PodCidrAllocator({ kv: kv(prefix), node: `node-${i}`, logger }, cfg).claim(),
      ),
    );
    const v4 = claims.map((c) => c.ipv4);
    assert.equal(new Set(v4).size, 12, `disjoint: ${v4.join(" ")}`);
    assert.equal(new Set(claims.map((c) => c.ipv6)).size, 12);
    for (const c of claims) {
      assert.match(c.ipv4 ?? "", /^10\.8\.\d+\.0\/24$/);
      assert.match(c.ipv6 ?? "", /^fd00:8::[0-9a-f:]*\/112$/);
      assert.equal(c.allocated, true);
    }
    // What etcd holds agrees with what each node uses.
    const s = kv(prefix);
    for (let i = 0; i < 12; i++) {
      const kvv = await s.get(`cluster/podcidrs/node-${i}`);
      assert.deepEqual(JSON.parse(kvv?.value ?? "{}"), claims[i]);
    }
  });

  it("a restarted node keeps its block; a new node gets another", async () => {
    const prefix = `pc-${n++}/`;
    const cfg = { clusterCidr: { ipv4: "10.9.0.0/16" } };
    const a1 = await new PodCidrAllocator({ kv: kv(prefix), node: "a", logger }, cfg).claim();
    const b = await new PodCidrAllocator({ kv: kv(prefix), node: "b", logger }, cfg).claim();
    const before = await kv(prefix).get("cluster/podcidrs/a");
    const a2 = await new PodCidrAllocator({ kv: kv(prefix), node: "a", logger }, cfg).claim();
    assert.deepEqual(a2, a1);
    assert.notEqual(b.ipv4, a1.ipv4);
    const afterKv = await kv(prefix).get("cluster/podcidrs/a");
    assert.equal(afterKv?.modRevision, before?.modRevision, "a restart does not rewrite the claim");
  });

  it("--pod-cidr overlapping an earlier claim is refused naming the other node; nothing changes", async () => {
    const prefix = `pc-${n++}/`;
    const s = kv(prefix);
    await new PodCidrAllocator(
      { kv: s, node: "first", logger },
      { configured: { ipv4: "10.1.0.0/24" } },
    ).claim();
    const rev = await s.revision();
    await assert.rejects(
      new PodCidrAllocator(
        { kv: s, node: "second", logger },
        { configured: { ipv4: "10.1.0.128/25" } },
      ).claim(),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "CLUSTER_INVALID" &&
        /--pod-cidr 10\.1\.0\.128\/25/.test(e.message) &&
        /node first/.test(e.message),
    );
    assert.equal(await s.get("cluster/podcidrs/second"), undefined, "the losing claim is withdrawn");
    assert.equal(JSON.parse((await s.get("cluster/podcidrs/first"))?.value ?? "{}").ipv4, "10.1.0.0/24");
    assert.ok((await s.revision()) > rev);
    // A configured CIDR that does not overlap is claimed as given (canonical form).
    const ok = await new PodCidrAllocator(
      { kv: s, node: "third", logger },
      { configured: { ipv4: "10.1.1.7/24" } },
    ).claim();
    assert.deepEqual(ok, { v: 1, ipv4: "10.1.1.0/24", allocated: false });
  });

  it("an allocating node avoids a CIDR another node configured; a full cluster CIDR is a clear error", async () => {
    const prefix = `pc-${n++}/`;
    const s = kv(prefix);
    await new PodCidrAllocator(
      { kv: s, node: "fixed", logger },
      { configured: { ipv4: "10.2.0.0/25" } },
    ).claim();
    const cfg = { clusterCidr: { ipv4: "10.2.0.0/23" }, maskSize4: 24 };
    const got = await new PodCidrAllocator({ kv: s, node: "x", logger }, cfg).claim();
    assert.equal(got.ipv4, "10.2.1.0/24");
    await assert.rejects(
      new PodCidrAllocator({ kv: s, node: "y", logger }, cfg).claim(),
      (e: unknown) =>
        e instanceof MembraneError && /every block of the cluster CIDR 10\.2\.0\.0\/23/.test(e.message),
    );
    assert.equal(await s.get("cluster/podcidrs/y"), undefined);
  });

  it("bad settings are refused naming the flag", () => {
    assert.throws(
      () => validatePodCidrConfig({ configured: { ipv4: "10.0.0.0" } }),
      /--pod-cidr "10\.0\.0\.0"/,
    );
    assert.throws(
      () => validatePodCidrConfig({ clusterCidr: { ipv4: "fd00::/64" } }),
      /--cluster-cidr "fd00::\/64": not an IPv4/,
    );
    assert.throws(
      () => validatePodCidrConfig({ clusterCidr: { ipv4: "10.0.0.0/16" }, maskSize4: 12 }),
      /--cluster-cidr-mask-size 12/,
    );
  });
});
