/**
 * The proxy workers' ports (proxy/runtime/workers.ts): worker i on
 * l7Port + i and dnsPort + i; ranges that collide or overflow are refused
 * naming what collides. (The processes themselves: test/agent/e2e/l7-workers.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { workerPorts } from "../../src/proxy/runtime/workers.js";

describe("proxy workers: ports", () => {
  test("worker i listens on l7Port + i and dnsPort + i", () => {
    assert.deepEqual(workerPorts({ l7Port: 15001, dnsPort: 15053 }, 3), {
      l7Ports: [15001, 15002, 15003],
      dnsPorts: [15053, 15054, 15055],
    });
    assert.deepEqual(workerPorts({ l7Port: 15001, dnsPort: 15053 }, 1), {
      l7Ports: [15001],
      dnsPorts: [15053],
    });
  });
  const bad: { name: string; l7Port: number; dnsPort: number; workers: number; message: RegExp }[] = [
    { name: "no worker", l7Port: 15001, dnsPort: 15053, workers: 0, message: /0 workers \(1\.\.256\)/ },
    { name: "a fraction", l7Port: 15001, dnsPort: 15053, workers: 1.5, message: /1\.5 workers/ },
    {
      name: "L7 and DNS ranges overlapping",
      l7Port: 15001,
      dnsPort: 15003,
      workers: 4,
      message: /L7 ports 15001\.\.15004 and the DNS ports 15003\.\.15006 overlap/,
    },
    {
      name: "ports past 65535",
      l7Port: 65530,
      dnsPort: 15053,
      workers: 8,
      message: /would end at 65537, past 65535/,
    },
  ];
  for (const c of bad)
    test(`refuses ${c.name}`, () =>
      assert.throws(
        () => workerPorts({ l7Port: c.l7Port, dnsPort: c.dnsPort }, c.workers),
        (e: Error & { code?: string }) => e.code === "PROXY_FAILED" && c.message.test(e.message),
      ));
});
