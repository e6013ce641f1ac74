import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { FlowMetrics, serveMetrics } from "../../src/observe/metrics.js";
import { SAMPLES } from "./samples.js";

const promtool = spawnSync("sh", ["-c", "command -v promtool"]).status === 0;

async function scrape(): Promise<{ text: string; res: Response; close: () => Promise<void>; base: string }> {
  const m = new FlowMetrics();
  for (const f of Object.values(SAMPLES)) m.observeFlow(f);
  m.observeFlow(SAMPLES.deny!);
  // A refused DNS query from the proxy.
  m.observeFlow({
    ...SAMPLES.http!,
    l7: { type: "RESPONSE", dns: { query: "blocked.test.", rcode: 5, qtypes: ["A"] } },
  });
  m.lostEvents("PERF_EVENT_RING_BUFFER", 5);
  m.setEndpoints(3);
  m.setIdentities(7);
  m.setPolicyRevision(42);
  m.observeApplyToEnforced(0.08);
  m.observeNftTransaction(0.004);
  const s = await serveMetrics({ host: "127.0.0.1", port: 0, registry: m.registry });
  const base = `http://127.0.0.1:${s.port}`;
  const res = await fetch(`${base}/metrics`);
  return { text: await res.text(), res, close: () => s.close(), base };
}

describe("metrics", () => {
  test("the scrape has Hubble's metrics with Hubble's label sets, counted from flows", async () => {
    const { text, res, close } = await scrape();
    try {
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("access-control-allow-origin"), null);
      const lines = text.split("\n");
      for (const want of [
        'hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="DROPPED"} 2',
        'hubble_flows_processed_total{protocol="HTTP",type="L7",subtype="HTTP",verdict="FORWARDED"} 1',
        'hubble_flows_processed_total{protocol="DNS",type="L7",subtype="DNS",verdict="FORWARDED"} 1',
        'hubble_flows_processed_total{protocol="ICMPv6",type="Drop",subtype="",verdict="DROPPED"} 1',
        'hubble_drop_total{reason="POLICY_DENY",protocol="TCP"} 2',
        'hubble_drop_total{reason="INVALID_SOURCE_IP",protocol="ICMPv6"} 1',
        'hubble_policy_verdicts_total{direction="ingress",match="l3-l4",action="dropped"} 2',
        'hubble_policy_verdicts_total{direction="egress",match="l3-l4",action="forwarded"} 1',
        'hubble_policy_verdicts_total{direction="ingress",match="none",action="audit"} 1',
        'hubble_policy_verdicts_total{direction="ingress",match="l7/http",action="forwarded"} 1',
        'hubble_http_requests_total{method="GET",protocol="HTTP/1.1",status="404",reporter="server"} 1',
        'hubble_dns_responses_total{rcode="Query Refused",qtypes="A",ips_returned="0"} 1',
        'hubble_dns_queries_total{rcode="",qtypes="A",ips_returned="0"} 1',
        'hubble_port_distribution_total{protocol="UDP",port="53"} 1',
        'hubble_icmp_total{family="IPv6",type="EchoRequest"} 1',
        'hubble_lost_events_total{source="perf_event_ring_buffer"} 5',
        "membrane_endpoints 3",
        "membrane_identities 7",
        "membrane_policy_revision 42",
        'membrane_policy_apply_to_enforced_seconds_bucket{le="0.1"} 1',
        "membrane_nft_transaction_duration_seconds_count 1",
      ])
        assert.ok(lines.includes(want), `missing: ${want}`);
      for (const [prefix, why] of [
        [
          'hubble_port_distribution_total{protocol="TCP",port="43210"}',
          "replies are not counted as destination ports",
        ],
        [
          'hubble_port_distribution_total{protocol="TCP",port="80"}',
          "drops are not counted as destination ports",
        ],
        ['hubble_port_distribution_total{protocol="TCP",port="443"}', "audited flows are not forwarded ones"],
        ["hubble_flows_to_world_total{", "a non-policy drop to the world is counted only with any-drop"],
      ] as const)
        assert.ok(!lines.some((l) => l.startsWith(prefix)), why);
      assert.ok(!text.includes("process_cpu"), "no default metrics");
    } finally {
      await close();
    }
  });

  test("only GET/HEAD /metrics answer", async () => {
    const { close, base } = await scrape();
    try {
      assert.equal((await fetch(`${base}/`)).status, 404);
      assert.equal((await fetch(`${base}/metrics`, { method: "POST" })).status, 405);
      const head = await fetch(`${base}/metrics`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
    } finally {
      await close();
    }
  });

  test(
    "promtool check metrics accepts the scrape",
    { skip: promtool ? false : "needs promtool (apt-get install -y prometheus)" },
    async () => {
      const { text, close } = await scrape();
      await close();
      const dir = mkdtempSync(join(tmpdir(), "mbt-metrics-"));
      try {
        writeFileSync(join(dir, "scrape.txt"), text);
        const r = spawnSync("sh", ["-c", `promtool check metrics < ${join(dir, "scrape.txt")}`], {
          encoding: "utf8",
        });
        assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
        assert.equal((r.stdout + r.stderr).trim(), "");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  test("a busy address is a METRICS_SERVE_FAILED error naming it", async () => {
    const { close, base } = await scrape();
    const port = Number(new URL(base).port);
    try {
      await assert.rejects(serveMetrics({ host: "127.0.0.1", port, registry: new FlowMetrics().registry }), {
        code: "METRICS_SERVE_FAILED",
        message: new RegExp(`^Cannot serve metrics on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`),
      });
    } finally {
      await close();
    }
  });
});
