/**
 * Stopping a supervised child (src/proxy/runtime/stop-child.ts, used by the proxy's and the mTLS
 * tunnel's supervisors): a child that ignores SIGTERM is killed after the grace time; a child that
 * exited already resolves at once (no "exit" event will come again).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { stopChild } from "../../src/proxy/runtime/stop-child.js";

test("a child ignoring SIGTERM is killed after the grace time", { timeout: 30_000 }, async () => {
  const c = spawn(process.execPath, ["-e", 'process.on("SIGTERM", () => {}); console.log("up"); setInterval(() => {}, 1000)'], { stdio: ["ignore", "pipe", "ignore"] }); // prettier-ignore
  await once(c.stdout, "data"); // its SIGTERM handler is in place
  await stopChild(c, 200);
  assert.equal(c.signalCode, "SIGKILL");
});

test("a child that obeys SIGTERM ends with it", { timeout: 30_000 }, async () => {
  const c = spawn(process.execPath, ["-e", 'console.log("up"); setInterval(() => {}, 1000)'], { stdio: ["ignore", "pipe", "ignore"] }); // prettier-ignore
  await once(c.stdout, "data");
  await stopChild(c);
  assert.equal(c.signalCode, "SIGTERM");
});

test("a child that has exited already: resolves at once", { timeout: 30_000 }, async () => {
  const c = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await once(c, "exit");
  await stopChild(c);
  assert.equal(c.exitCode, 0);
});
