/**
 * Services controller (agent/controllers/services.ts) over a real embedded
 * store: every field is checked before anything is stored, so a refused
 * service changes neither the store nor the engine.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { MembraneError } from "../../../src/errors.js";
import { ServicesController, SERVICES_KEY } from "../../../src/agent/controllers/services.js";
import type { ServiceSpec } from "../../../src/policy/query.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { testDeps } from "./fake-deps.js";

const good: ServiceSpec = {
  name: "db",
  namespace: "default",
  selector: { app: "db" },
  labels: { team: "data" },
  ports: [{ port: 5432, protocol: "TCP" }],
};

describe("services controller", () => {
  test("a bad field is refused by name and nothing is stored", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mbr-services-ctl-"));
    const store = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
    try {
      const d = testDeps(store);
      const c = new ServicesController(d);
      const bad: [string, ServiceSpec, RegExp][] = [
        ["port 0", { ...good, ports: [{ port: 0, protocol: "TCP" }] }, /ports\[0\]\.port must be a port/],
        ["port 70000", { ...good, ports: [{ port: 70000, protocol: "UDP" }] }, /ports\[0\]\.port/],
        [
          "an ip that is not one",
          { name: "ext", namespace: "default", ports: [], ips: ["10.0.0.1", "x\u001b"] },
          /ips\[1\]/,
        ],
        ["a bad label key", { ...good, labels: { "bad key!": "v" } }, /bad key!/],
        ["a bad label value", { ...good, labels: { team: "a b" } }, /a b/],
        ["a bad selector", { ...good, selector: { app: "-x" } }, /-x/],
      ];
      for (const [what, spec, names] of bad) {
        await assert.rejects(c.upsert(spec), (e: unknown) => {
          assert.ok(e instanceof MembraneError, what);
          assert.match(e.message, names, what);
          return true;
        });
      }
      assert.equal((await store.list(SERVICES_KEY)).kvs.length, 0, "a refused service was stored");
      assert.equal(d.enforces, 0, "a refused service was enforced");
      await c.upsert(good);
      assert.equal((await store.list(SERVICES_KEY)).kvs.length, 1);
      assert.equal(d.enforces, 1);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
