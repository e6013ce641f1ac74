/**
 * Remote endpoints controller over a store that holds etcd's limit of
 * operations per transaction: a bulk larger than one transaction goes in
 * whole, and a failure in a later transaction puts back what the earlier
 * ones changed (a changed entry gets its old record, a new one is deleted).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { STORE_TXN_OPS } from "../../../src/agent/controllers/identities.js";
import {
  REMOTE_ENDPOINTS_KEY,
  RemoteEndpointsController,
} from "../../../src/agent/controllers/remote-endpoints.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { EtcdLimits } from "./etcd-limits.js";
import { testDeps } from "./fake-deps.js";

const ep = (i: number, app = "a") => ({
  ip: `10.231.${i >> 8}.${i & 255}`,
  namespace: "default",
  labels: { app },
});

describe("remote endpoints controller: bulks larger than one store transaction", () => {
  test("a failed later transaction leaves the store as it was", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mbr-remote-chunked-"));
    const real = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
    try {
      const s = new EtcdLimits(real);
      const d = testDeps(s.store);
      const c = new RemoteEndpointsController(d);
      await c.upsert([ep(0), ep(1)]);
      const dump = async () =>
        new Map((await real.list(REMOTE_ENDPOINTS_KEY)).kvs.map((kv) => [kv.key, kv.value]));
      const before = await dump();
      // 300 entries: the first two change (first transaction), the rest are new.
      s.failAt = s.txns + 3;
      const bulk = Array.from({ length: 300 }, (_, i) => ep(i, "b"));
      await assert.rejects(c.upsert(bulk), /injected failure/);
      assert.deepEqual(await dump(), before, "the store does not hold what it held before the request");
      assert.equal(c.size, 2);
      s.failAt = undefined;
      const r = await c.upsert(bulk);
      assert.equal(r.changed, 300);
      assert.ok(s.sizes.every((n) => n <= STORE_TXN_OPS));
      assert.equal((await dump()).size, 300);
    } finally {
      await real.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
