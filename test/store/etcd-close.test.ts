// Closing an EtcdStore lets the process go: a watch never cancelled by its
// owner used to survive close() in etcd3's watch manager, which retried the
// stream forever on ref'd timers (a CI test process stayed alive for minutes).
// The check runs in a child process against a real etcd: it must exit by itself.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const STORE = fileURLToPath(new URL("../../src/store/etcd.js", import.meta.url));

/** Runs `script` (an ES module) in a child node; its exit code, or "alive" after a 30 s safety net. */
function runChild(script: string): Promise<number | "alive"> {
  const c = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "inherit" });
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.kill("SIGKILL");
      resolve("alive");
    }, 30_000);
    c.on("exit", (code) => {
      clearTimeout(t);
      resolve(code ?? -1);
    });
  });
}

describe("etcd store close (etcd)", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  before(async () => (etcd = await startEtcd()));
  after(() => etcd.stop());

  test("a store closed with its watches still open lets its process exit", async () => {
    const script = `
      import { EtcdStore } from ${JSON.stringify(STORE)};
      import { pino } from "pino";
      const s = new EtcdStore({ endpoints: [${JSON.stringify(etcd.endpoint)}], logger: pino({ level: "silent" }), prefix: "close-test/" });
      await s.watch("a/", 0, () => undefined);
      await s.watch("b/", 0, () => undefined);
      await s.put("a/x", "1");
      await s.close();
    `;
    assert.equal(await runChild(script), 0);
  });
});
