/**
 * The health check process (lb/health-child.ts) faces whoever can reach a node port: hostile
 * HTTP never takes it down and never gets another answer than the health check's; a port
 * asked again after the process died is served by a new one. Runs in this process's network
 * namespace on loopback (no netns needed); as root the process drops to nobody.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { HealthServers } from "../../src/lb/health-server.js";
import type { HealthCheck } from "../../src/lb/health-answer.js";

/** A port free now (bound, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Sends raw bytes, returns what came back until the server closed (or `ms` of silence). */
function raw(port: number, bytes: string | Buffer, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    const t = setTimeout(() => s.destroy(), ms);
    s.on("data", (d: Buffer) => (got += d.toString("latin1")));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(t);
      resolve(got);
    });
    s.write(bytes);
  });
}

/** A plain health probe (HTTP/1.1 needs a Host header: Node answers 400 without, as Go's kube-proxy does). */
const GET_ONE = "GET / HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n";
const status = (reply: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);

describe("the health check process against hostile HTTP", () => {
  let hs: HealthServers;
  let check: HealthCheck;
  const errors: string[] = [];

  before(async () => {
    hs = new HealthServers({ onError: (_c, why) => errors.push(why) });
    check = { namespace: "shop", name: "web", port: await freePort(), localEndpoints: 1 };
    await hs.sync([check], true);
    assert.deepEqual(errors, []);
  });
  after(() => hs?.stop());

  test("malformed requests, oversized headers and smuggling attempts get an error or a close, never a crash", async () => {
    const hostile: string[] = [
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n" + "X-Big: " + "a".repeat(8192) + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET / HTTP/1.1\nHost: x\n\n",
      "\x00\x01\x02\xff".repeat(100),
      "GET /" + "%".repeat(5000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for (const h of hostile) {
      const r = await raw(check.port, h);
      assert.ok(r === "" || [200, 400, 431].includes(status(r)), `${JSON.stringify(h.slice(0, 40))}: ${r.slice(0, 80)}`); // prettier-ignore
    }
    // Many connections at once: bounded, and it still answers afterwards.
    const idle = Array.from({ length: 100 }, () => net.connect(check.port, "127.0.0.1").on("error", () => undefined)); // prettier-ignore
    await new Promise((r) => setTimeout(r, 200));
    for (const s of idle) s.destroy();
    let ok = "";
    for (let i = 0; i < 20 && status(ok) !== 200; i++)
      ok = await raw(check.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.equal(status(ok), 200, ok);
    assert.match(ok, /\r\n\r\n\{"service":\{"namespace":"shop","name":"web"\},"localEndpoints":1,"serviceProxyHealthy":true\}$/); // prettier-ignore
  });

  test("counts and health change the answer at once; a port no longer asked for is closed", async () => {
    await hs.sync([{ ...check, localEndpoints: 0 }], true);
    assert.equal(status(await raw(check.port, GET_ONE)), 503);
    await hs.sync([check], false);
    assert.equal(status(await raw(check.port, GET_ONE)), 503);
    await hs.sync([check], true);
    assert.equal(status(await raw(check.port, GET_ONE)), 200);
    await hs.sync([], true);
    const refused = await new Promise<string>(
      (r) =>
      net.connect(check.port, "127.0.0.1").on("connect", () => r("connected")).on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "")), // prettier-ignore
    );
    assert.equal(refused, "ECONNREFUSED");
    await hs.sync([check], true);
    assert.equal(status(await raw(check.port, GET_ONE)), 200);
  });

  test("a port another process holds is reported, not fatal; the others are still served", async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, "::", r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      errors.length = 0;
      await hs.sync([check, { namespace: "shop", name: "busy", port, localEndpoints: 1 }], true);
      assert.equal(errors.length, 1, errors.join("; "));
      assert.match(errors[0] ?? "", /EADDRINUSE/);
      assert.equal(status(await raw(check.port, GET_ONE)), 200);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
