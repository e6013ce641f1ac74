/**
 * The Store contract (STYLE.md §9): every backend runs these same cases.
 * `open` returns a fresh, empty store view (etcd: a fresh key namespace), so
 * revisions are only compared with each other, never with fixed numbers.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Store, WatchEvent } from "../../src/store/store.js";
import { MembraneError } from "../../src/errors.js";

export type StoreFactory = () => Promise<Store>;

async function withStore(open: StoreFactory, f: (s: Store) => Promise<void>): Promise<void> {
  const s = await open();
  try {
    await f(s);
  } finally {
    await s.close();
  }
}

/** Collects watch events; `next(n)` waits until n have arrived (or fails after 5 s). */
export function collector(): {
  cb: (ev: WatchEvent) => void;
  events: WatchEvent[];
  next: (n: number) => Promise<WatchEvent[]>;
} {
  const events: WatchEvent[] = [];
  let wake: (() => void) | undefined;
  return {
    events,
    cb: (ev) => {
      events.push(ev);
      wake?.();
    },
    next: async (n) => {
      const deadline = Date.now() + 5000;
      while (events.length < n) {
        if (Date.now() > deadline) assert.fail(`expected ${n} watch events, got ${JSON.stringify(events)}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return events.slice(0, n);
    },
  };
}

const strip = (evs: readonly WatchEvent[]): string[] => evs.map((e) => `${e.type} ${e.key}=${e.value}`);

export function storeContract(backend: string, open: StoreFactory): void {
  describe(`Store contract: ${backend}`, () => {
    test("a put value is read back by get and list, and a delete removes it", () =>
      withStore(open, async (s) => {
        await s.put("a/1", "one");
        await s.put("a/2", "two");
        await s.put("b/1", "other");
        assert.equal((await s.get("a/1"))?.value, "one");
        assert.equal(await s.get("a/3"), undefined);
        const l = await s.list("a/");
        assert.deepEqual(
          l.kvs.map((kv) => [kv.key, kv.value]),
          [
            ["a/1", "one"],
            ["a/2", "two"],
          ],
        );
        assert.equal(l.revision, await s.revision());
        await s.delete("a/1");
        assert.equal(await s.get("a/1"), undefined);
        assert.deepEqual(
          (await s.list("a/")).kvs.map((kv) => kv.key),
          ["a/2"],
        );
      }));

    test("list returns keys sorted bytewise, including keys that sort before and after the prefix", () =>
      withStore(open, async (s) => {
        for (const k of ["p/b", "p/a", "p/c/d", "p", "q", "o/z", "p0"]) await s.put(k, k);
        assert.deepEqual(
          (await s.list("p/")).kvs.map((kv) => kv.key),
          ["p/a", "p/b", "p/c/d"],
        );
      }));

    test("every write bumps the revision; modRevision follows updates and createRevision stays", () =>
      withStore(open, async (s) => {
        const r1 = await s.put("k", "1");
        const r2 = await s.put("k", "2");
        const r3 = await s.put("other", "x");
        assert.ok(r1 < r2 && r2 < r3, `revisions ${r1} ${r2} ${r3} must increase`);
        const kv = await s.get("k");
        assert.deepEqual(kv, { key: "k", value: "2", createRevision: r1, modRevision: r2 });
        assert.equal(await s.revision(), r3);
        const r4 = await s.delete("k");
        assert.ok(r4 > r3);
        const r5 = await s.put("k", "3");
        assert.equal((await s.get("k"))?.createRevision, r5, "a re-created key has a new createRevision");
      }));

    test("deleting a missing key does not bump the revision", () =>
      withStore(open, async (s) => {
        const r = await s.put("x", "1");
        assert.equal(await s.delete("missing"), r);
        assert.equal(await s.revision(), r);
      }));

    test("txn fails when a compare names a stale modRevision, and changes nothing", () =>
      withStore(open, async (s) => {
        const r1 = await s.put("lease", "node-a");
        await s.put("lease", "node-b");
        const before = await s.revision();
        const res = await s.txn({
          compare: [{ key: "lease", modRevision: r1 }],
          ops: [{ type: "put", key: "lease", value: "node-c" }],
        });
        assert.deepEqual(res, { succeeded: false, revision: before });
        assert.equal((await s.get("lease"))?.value, "node-b");
      }));

    test("txn with every compare holding applies all ops at one revision", () =>
      withStore(open, async (s) => {
        const r1 = await s.put("a", "1");
        await s.put("gone", "x");
        const res = await s.txn({
          compare: [
            { key: "a", modRevision: r1 },
            { key: "new", modRevision: 0 },
          ],
          ops: [
            { type: "put", key: "a", value: "2" },
            { type: "put", key: "new", value: "n" },
            { type: "delete", key: "gone" },
          ],
        });
        assert.equal(res.succeeded, true);
        assert.equal((await s.get("a"))?.modRevision, res.revision);
        assert.equal((await s.get("new"))?.modRevision, res.revision);
        assert.equal(await s.get("gone"), undefined);
        assert.equal(await s.revision(), res.revision);
      }));

    test("txn compare on modRevision 0 means absent: create-if-absent succeeds once", () =>
      withStore(open, async (s) => {
        const create = {
          compare: [{ key: "ip", modRevision: 0 }],
          ops: [{ type: "put" as const, key: "ip", value: "pod-a" }],
        };
        assert.equal((await s.txn(create)).succeeded, true);
        assert.equal(
          (await s.txn({ ...create, ops: [{ type: "put", key: "ip", value: "pod-b" }] })).succeeded,
          false,
        );
        assert.equal((await s.get("ip"))?.value, "pod-a");
      }));

    test("txn compare on a prefix holds while nothing under it was written since the revision (empty prefix too; a delete does not fail it)", () =>
      withStore(open, async (s) => {
        const put = (key: string) => [{ type: "put" as const, key, value: "x" }];
        const since = (await s.list("gw/")).revision;
        const unchanged = [{ prefix: "gw/", unchangedSince: since }];
        assert.equal(
          (await s.txn({ compare: unchanged, ops: put("other") })).succeeded,
          true,
          "empty prefix",
        );
        await s.put("gwx", "not under gw/");
        assert.equal(
          (await s.txn({ compare: unchanged, ops: put("other2") })).succeeded,
          true,
          "gwx is not under gw/",
        );
        await s.put("gw/n2/10.0.0.1", "n2");
        assert.equal((await s.txn({ compare: unchanged, ops: put("gw/n1/10.0.0.1") })).succeeded, false, "written since"); // prettier-ignore
        assert.equal(await s.get("gw/n1/10.0.0.1"), undefined);
        const read = (await s.list("gw/")).revision;
        await s.delete("gw/n2/10.0.0.1");
        assert.equal((await s.txn({ compare: [{ prefix: "gw/", unchangedSince: read }], ops: put("gw/n1/10.0.0.1") })).succeeded, true, "a delete since"); // prettier-ignore
        // With a key compare in the same transaction: both must hold.
        const now = (await s.list("gw/")).revision;
        const both = { compare: [{ prefix: "gw/", unchangedSince: now }, { key: "ip/10.0.0.2", modRevision: 0 }], ops: put("gw/n1/10.0.0.2") }; // prettier-ignore
        await s.put("ip/10.0.0.2", "svc");
        assert.equal((await s.txn(both)).succeeded, false, "the key compare fails");
        await assert.rejects(
          s.txn({ compare: [{ prefix: "gw/", unchangedSince: -1 }], ops: put("y") }),
          /compare on prefix "gw\/" needs a revision/,
        );
      }));

    test("concurrent reservations of one address under two nodes' keys, each comparing the prefix: exactly one wins", () =>
      withStore(open, async (s) => {
        const since = (await s.list("gw/")).revision;
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            s.txn({
              compare: [{ prefix: "gw/", unchangedSince: since }],
              ops: [{ type: "put", key: `gw/n${i}/10.0.0.1`, value: `n${i}` }],
            }),
          ),
        );
        assert.equal(results.filter((r) => r.succeeded).length, 1);
        assert.equal((await s.list("gw/")).kvs.length, 1);
      }));

    test("concurrent create-if-absent txns on one key: exactly one wins", () =>
      withStore(open, async (s) => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            s.txn({
              compare: [{ key: "slot", modRevision: 0 }],
              ops: [{ type: "put", key: "slot", value: `owner-${i}` }],
            }),
          ),
        );
        const winners = results.map((r, i) => (r.succeeded ? i : -1)).filter((i) => i >= 0);
        assert.equal(winners.length, 1);
        assert.equal((await s.get("slot"))?.value, `owner-${winners[0]}`);
      }));

    test("watch from a past revision replays the changes since then, then streams new ones", () =>
      withStore(open, async (s) => {
        await s.put("w/a", "1");
        const rb = await s.put("w/b", "2");
        await s.put("elsewhere", "no");
        await s.delete("w/a");
        const c = collector();
        const off = await s.watch("w/", rb, c.cb);
        try {
          assert.deepEqual(strip(await c.next(2)), ["put w/b=2", "delete w/a="]);
          const rc = await s.put("w/c", "3");
          await s.put("x/c", "not mine");
          const all = await c.next(3);
          assert.deepEqual(strip(all), ["put w/b=2", "delete w/a=", "put w/c=3"]);
          assert.equal(all[0]?.revision, rb);
          assert.equal(all[2]?.revision, rc);
          assert.ok(
            all.every((e, i) => i === 0 || e.revision > (all[i - 1]?.revision ?? 0)),
            "events come in revision order",
          );
        } finally {
          await off();
        }
      }));

    test("watch from revision 0 streams only changes after the call, and unsubscribe stops it", () =>
      withStore(open, async (s) => {
        await s.put("n/old", "1");
        const c = collector();
        const off = await s.watch("n/", 0, c.cb);
        await s.put("n/new", "2");
        assert.deepEqual(strip(await c.next(1)), ["put n/new=2"]);
        await off();
        await s.put("n/after", "3");
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(strip(c.events), ["put n/new=2"]);
      }));

    test("the events of one txn share its revision and arrive together", () =>
      withStore(open, async (s) => {
        const c = collector();
        const off = await s.watch("t/", 0, c.cb);
        try {
          const res = await s.txn({
            compare: [],
            ops: [
              { type: "put", key: "t/1", value: "a" },
              { type: "put", key: "t/2", value: "b" },
            ],
          });
          const evs = await c.next(2);
          assert.deepEqual(
            evs.map((e) => e.revision),
            [res.revision, res.revision],
          );
        } finally {
          await off();
        }
      }));

    const values: { name: string; value: string }[] = [
      { name: "empty", value: "" },
      { name: "unicode and emoji", value: "Grüße, 世界 🌍 \u0000 nul" },
      { name: "newlines and JSON", value: '{"a":"line1\\nline2"}\nsecond line\r\n' },
      { name: "1 MiB", value: "x".repeat(1 << 20) },
    ];
    for (const v of values) {
      test(`a value survives the round trip unchanged: ${v.name}`, () =>
        withStore(open, async (s) => {
          const c = collector();
          const off = await s.watch("v/", 0, c.cb);
          try {
            await s.put("v/ключ ✓", v.value);
            assert.equal((await s.get("v/ключ ✓"))?.value, v.value);
            assert.equal((await s.list("v/")).kvs[0]?.value, v.value);
            assert.equal((await c.next(1))[0]?.value, v.value);
          } finally {
            await off();
          }
        }));
    }

    test("200 concurrent puts all land, each at its own revision", () =>
      withStore(open, async (s) => {
        const revs = await Promise.all(
          Array.from({ length: 200 }, (_, i) => s.put(`c/${String(i).padStart(3, "0")}`, `v${i}`)),
        );
        assert.equal(new Set(revs).size, 200);
        const l = await s.list("c/");
        assert.equal(l.kvs.length, 200);
        for (const [i, kv] of l.kvs.entries()) assert.equal(kv.value, `v${i}`);
      }));

    test("an empty key is refused with STORE_FAILED", () =>
      withStore(open, async (s) => {
        await assert.rejects(
          s.put("", "x"),
          (e: unknown) => e instanceof MembraneError && e.code === "STORE_FAILED",
        );
      }));
  });
}
