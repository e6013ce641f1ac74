/**
 * What the agent dropped from its proxy and gateway processes, where an operator looks
 * (agent/ipc-drops.ts): hostile messages go over real IPC into the agent's real readers (fromProxy
 * with the proxy's IpcDrops, as the supervisor attaches it; a GatewayInbox, as the runner does),
 * and then:
 * - /metrics, served over HTTP, counts them as membrane_ipc_dropped_total{process, reason}, and a
 *   later scrape adds only what was dropped since (promtool accepts the exposition when installed);
 * - the status (`GET /v1/status`'s ipcDropped, what `-o json` prints) holds the same counts, and
 *   `membrane get status`'s table says them per process ("none" when nothing was dropped).
 * The real agent's wiring (status and /metrics with the real proxy) is in test/agent/e2e/l7.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { Registry } from "prom-client";
import { IpcDrops } from "../../src/abi/ipc-drops.js";
import { ipcDropsStatus, registerIpcDrops } from "../../src/agent/ipc-drops.js";
import { statusRows } from "../../src/cli/commands/get.js";
import { GatewayInbox } from "../../src/gateway/from-gateway.js";
import { serveMetrics } from "../../src/observe/metrics.js";
import { fromProxy, type ProxyDrop } from "../../src/proxy/runtime/protocol.js";
import { L7_FLOW as FLOW } from "../proxy/fixtures/l7-flow.js";
import { overIpc } from "../support/over-ipc.js";

const GATEWAY_EVENT = { listener: "10.0.0.1:80", client: { address: "192.0.2.7", port: 40000 }, status: 200, latencyMs: 1 }; // prettier-ignore

/** The value of each membrane_ipc_dropped_total series, by `process reason`. */
function series(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^membrane_ipc_dropped_total\{process="([^"]+)",reason="([^"]+)"\} (\S+)$/gm))
    out[`${m[1]} ${m[2]}`] = Number(m[3]);
  return out;
}

describe("dropped IPC messages in status and metrics", () => {
  test("counted by process and reason on /metrics and in status; a later scrape adds only the new ones", async () => {
    const proxy = new IpcDrops<ProxyDrop>("proxy");
    const fromTheProxy = (m: unknown): void => void fromProxy(m, (why) => proxy.add(why));
    const inbox = new GatewayInbox({ onApplied: () => undefined });
    const sources = { proxy: () => proxy.view(), gateway: () => inbox.dropped };
    const registry = new Registry();
    registerIpcDrops(registry, sources);
    const server = await serveMetrics({ host: "127.0.0.1", port: 0, registry });
    const scrape = async (): Promise<string> =>
      (await fetch(`http://${server.host}:${server.port}/metrics`)).text();
    try {
      // Nothing dropped yet: the metric is declared, with no series; status says none.
      const empty = await scrape();
      assert.match(empty, /^# TYPE membrane_ipc_dropped_total counter$/m);
      assert.deepEqual(series(empty), {});
      assert.deepEqual(ipcDropsStatus(sources), { ipcDropped: { proxy: {}, gateway: {} } });

      await overIpc(fromTheProxy, [
        { type: "l7-batch", events: [FLOW, { ...FLOW, src: { address: "evil.example", port: 1 } }, "junk"] },
        { type: "l7", ...FLOW, dst: { address: "10.0.0.1%lo", port: 80 } },
        { type: "dns-answer", id: 1, endpoint: "a/b", name: "x.", ips: ["x"], ttl: 1 },
      ]);
      await overIpc((m) => inbox.receive(m), [{ type: "events", events: [GATEWAY_EVENT, { ...GATEWAY_EVENT, status: "200" }] }]); // prettier-ignore
      const first = await scrape();
      assert.deepEqual(series(first), {
        "proxy address": 2,
        "proxy l7 event": 1,
        "proxy dns answer": 1,
        "gateway status": 1,
      });
      const promtool = spawnSync("promtool", ["check", "metrics"], { input: first, encoding: "utf8" });
      if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stderr);

      const status = ipcDropsStatus(sources);
      assert.deepEqual(status, {
        ipcDropped: { proxy: { address: 2, "l7 event": 1, "dns answer": 1 }, gateway: { status: 1 } },
      });
      // `membrane get status -o json` prints the agent's answer as it is: the counts survive JSON.
      assert.deepEqual(JSON.parse(JSON.stringify(status)), status);
      assert.deepEqual(statusRows({ revision: 4, ...status }), [
        ["revision", "4"],
        ["dropped from proxy", "4 (address 2, l7 event 1, dns answer 1)"],
        ["dropped from gateway", "1 (status 1)"],
      ]);

      // More drops: the next scrape adds them once (the counter is not counted twice).
      await overIpc(fromTheProxy, [{ type: "l7", ...FLOW, src: { address: " 10.200.0.5", port: 1 } }]);
      assert.deepEqual(series(await scrape()), { ...series(first), "proxy address": 3 });
      assert.deepEqual(series(await scrape()), { ...series(first), "proxy address": 3 });
    } finally {
      await server.close();
    }
  });

  test("a process that does not run is not in status; nothing dropped reads `none` in the table", () => {
    const proxy = new IpcDrops<ProxyDrop>("proxy");
    const sources = { proxy: () => proxy.view(), gateway: () => undefined };
    assert.deepEqual(ipcDropsStatus(sources), { ipcDropped: { proxy: {} } });
    assert.deepEqual(statusRows(ipcDropsStatus(sources)), [["dropped from proxy", "none"]]);
    assert.deepEqual(ipcDropsStatus({ proxy: () => undefined, gateway: () => undefined }), {});
  });
});
