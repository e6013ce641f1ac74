/**
 * The cluster resources watcher (cluster/resources.ts) against a real etcd:
 * list, then watch from the list's revision + 1; a failed watch lists again
 * and drops what was deleted meanwhile; a failed enforce keeps the realized
 * revision and shows the error in `cluster/status/<node>` until a retry
 * succeeds. The resource is a plain map (SyncedResource); no kernel.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { statusKey, type NodeStatusV1 } from "../../src/cluster/keys.js";
import { ClusterResources } from "../../src/cluster/resources.js";
import type { SyncedResource } from "../../src/cluster/synced.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import type { WatchOptions } from "../../src/store/store.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { until } from "../support/until.js";

class MapResource implements SyncedResource {
  readonly prefix = "policies/";
  readonly view = new Map<string, string>();
  syncRecord(key: string, value: string | undefined): boolean {
    if (this.view.get(key) === value) return false;
    if (value === undefined) this.view.delete(key);
    else this.view.set(key, value);
    return true;
  }
  syncedKeys(): string[] {
    return [...this.view.keys()];
  }
}

describe("cluster resources watcher (etcd)", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  test("a watch that fails lists again: a record deleted while the watch was down leaves the view", async () => {
    const kv: EtcdStore = etcd.store({ prefix: "rs-w1/" });
    const lease = await kv.grantLease(10, () => undefined);
    const res = new MapResource();
    // The real etcd watch, with its stream gated: `down` drops events as a lost stream would.
    let down = false;
    const failures: ((e: Error) => void)[] = [];
    const gated = new Proxy(kv, {
      get(target, prop, recv) {
        if (prop !== "watch") return Reflect.get(target, prop, recv) as unknown;
        return (p: string, rev: number, cb: (ev: never) => void, opts?: WatchOptions) => {
          if (opts?.onError) failures.push(opts.onError);
          return target.watch(p, rev, (ev) => (down ? undefined : cb(ev as never)), opts);
        };
      },
    });
    let enforces = 0;
    const c = new ClusterResources({
      ctx: { kv: gated, lease, node: "rs-w1", nodeIp: {}, logger: pino({ level: "silent" }) },
      resources: [res],
      serial: (f) => f(),
      enforce: async () => void enforces++,
      kernelBehind: () => false,
      retryMs: 50,
    });
    try {
      await kv.put("cluster/policies/a", "A");
      await kv.put("cluster/policies/b", "B");
      await c.start();
      assert.deepEqual(res.syncedKeys().sort(), ["policies/a", "policies/b"]);
      const listed = c.realized;
      assert.ok(listed > 0);

      const rev = await kv.put("cluster/policies/c", "C");
      await until("the watch to deliver c", () => res.view.get("policies/c") === "C" && c.realized >= rev);

      down = true;
      const gone = await kv.delete("cluster/policies/a");
      down = false;
      assert.equal(res.view.has("policies/a"), true, "the lost stream did not deliver the delete");
      failures.at(-1)?.(new Error("watch stream lost"));
      await until("the re-list to drop a", () => !res.view.has("policies/a") && c.realized >= gone);
      assert.deepEqual(res.syncedKeys().sort(), ["policies/b", "policies/c"]);

      const d = await kv.put("cluster/policies/d", "D");
      await until("the new watch to deliver d", () => res.view.get("policies/d") === "D" && c.realized >= d);
      assert.ok(enforces >= 3);
    } finally {
      await c.stop();
      await lease.revoke();
      await kv.close();
    }
  });

  test("an enforce that fails keeps the realized revision and shows the error in the node's status until a retry succeeds", async () => {
    const kv: EtcdStore = etcd.store({ prefix: "rs-w2/" });
    const lease = await kv.grantLease(10, () => undefined);
    const res = new MapResource();
    let failing = false;
    let behind = false;
    const c = new ClusterResources({
      ctx: { kv, lease, node: "rs-w2", nodeIp: {}, logger: pino({ level: "silent" }) },
      resources: [res],
      serial: (f) => f(),
      enforce: async () => {
        if (failing) {
          behind = true;
          throw new Error("nft: Could not process rule");
        }
        behind = false;
      },
      kernelBehind: () => behind,
      retryMs: 50,
    });
    const status = async (): Promise<NodeStatusV1 | undefined> => {
      const v = await kv.get(statusKey("rs-w2"));
      return v && (JSON.parse(v.value) as NodeStatusV1);
    };
    try {
      await c.start();
      const first = c.realized;
      await until("the first status", async () => (await status())?.realizedRevision === first);

      failing = true;
      const rev = await kv.put("cluster/policies/x", "X");
      await until("the error in the status", async () => (await status())?.lastError !== undefined);
      const st = await status();
      assert.equal(st?.realizedRevision, first, "not realized while the kernel refuses");
      assert.match(st?.lastError ?? "", /Could not process rule/);
      assert.equal(c.realized, first);

      failing = false; // the retry succeeds
      await until("the retry to realize x", async () => {
        const s = await status();
        return s?.realizedRevision === rev && s.lastError === undefined;
      });
    } finally {
      await c.stop();
      await lease.revoke();
      await kv.close();
    }
  });
});
