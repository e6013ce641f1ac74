// PrefixMirror: list + watch from the list's revision + 1; when the watch fails, it lists again
// and reports exactly the keys that changed while it was blind (puts, changes and deletes).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { PrefixMirror } from "../../src/cluster/mirror.js";
import type { Store, WatchOptions } from "../../src/store/store.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { until } from "../support/until.js";

describe("PrefixMirror against etcd", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  before(async () => void (etcd = await startEtcd()));
  after(async () => etcd?.stop());

  test("a failed watch is followed by a re-list that reports what changed meanwhile", async () => {
    const kv = etcd.store({ prefix: "membrane-mirror/" });
    // The real store, with a switch that makes the current watch blind and a handle on its onError.
    let blind = false;
    let fail: ((e: Error) => void) | undefined;
    const store: Store = Object.assign(Object.create(kv) as Store, {
      watch: (prefix: string, from: number, cb: Parameters<Store["watch"]>[2], o?: WatchOptions) => {
        const mine = { blind: false };
        blind = false;
        fail = (e) => {
          mine.blind = true;
          o?.onError?.(e);
        };
        return kv.watch(prefix, from, (ev) => !mine.blind && !blind && cb(ev), o);
      },
    });
    const seen: string[][] = [];
    await kv.put("cluster/x/keep", "1");
    await kv.put("cluster/x/change", "1");
    await kv.put("cluster/x/gone", "1");
    await kv.put("cluster/y/other", "1");
    const m = new PrefixMirror(
      store,
      "cluster/x/",
      pino({ level: "silent" }),
      (k) => seen.push([...k].sort()),
      50,
    );
    try {
      await m.start();
      assert.deepEqual(seen, [["cluster/x/change", "cluster/x/gone", "cluster/x/keep"]]);
      await kv.put("cluster/x/new", "1");
      await until("a watched put", () => m.entries.has("cluster/x/new"));
      assert.equal(
        m.entries.get("cluster/x/new")?.createRevision,
        (await kv.get("cluster/x/new"))?.createRevision,
      );
      seen.length = 0;
      blind = true; // events are lost from here on ...
      await kv.put("cluster/x/change", "2");
      await kv.delete("cluster/x/gone");
      await kv.put("cluster/x/later", "1");
      fail?.(new Error("compacted")); // ... and the watch says so
      await until("re-listed", () => m.entries.has("cluster/x/later"));
      assert.deepEqual(seen.flat().sort(), ["cluster/x/change", "cluster/x/gone", "cluster/x/later"]);
      assert.equal(m.entries.get("cluster/x/change")?.value, "2");
      assert.equal(m.entries.has("cluster/x/gone"), false);
      // The new watch delivers again.
      await kv.delete("cluster/x/keep");
      await until("watched delete", () => !m.entries.has("cluster/x/keep"));
    } finally {
      await m.stop();
      await kv.close();
    }
  });
});
