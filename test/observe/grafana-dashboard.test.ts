/**
 * The Grafana dashboard we ship (deploy/grafana/membrane.json) queries only what the agent
 * exports: every metric name in its PromQL is registered by the agent's metric registries
 * (flows, runtime and the IPC drops, started here), every label it groups or filters by is one of that
 * metric's labels (or Prometheus' own `instance`/`job`, `le` of a histogram's buckets), and
 * every legend names a grouped label. The checker itself is shown to catch a renamed metric,
 * an unknown label and a legend of a label that is not grouped.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { registerIpcDrops } from "../../src/agent/ipc-drops.js";
import { FlowMetrics } from "../../src/observe/metrics.js";
import { RuntimeMetrics } from "../../src/runtime/metrics.js";

const DASHBOARD = fileURLToPath(new URL("../../../deploy/grafana/membrane.json", import.meta.url));
const SCRAPE_LABELS = new Set(["instance", "job"]);

interface Exported {
  readonly type: string;
  readonly labels: ReadonlySet<string>;
}

/** What the agent's registries export: name -> type and label names. */
async function exported(): Promise<Map<string, Exported>> {
  const registry = new Registry();
  new FlowMetrics({ registry });
  new RuntimeMetrics(registry);
  registerIpcDrops(registry, { proxy: () => undefined, gateway: () => undefined });
  const out = new Map<string, Exported>();
  for (const m of await registry.getMetricsAsJSON()) {
    const single = registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
    out.set(m.name, { type: String(m.type), labels: new Set(single.labelNames ?? []) });
  }
  return out;
}

interface Target {
  readonly panel: string;
  readonly expr: string;
  readonly legend?: string;
}

function targets(dash: { panels?: unknown[]; templating?: { list?: unknown[] } }): Target[] {
  const out: Target[] = [];
  const walk = (panels: unknown[]): void => {
    for (const p of panels as {
      title?: string;
      targets?: { expr?: string; legendFormat?: string }[];
      panels?: unknown[];
    }[]) {
      for (const t of p.targets ?? [])
        if (t.expr !== undefined)
          out.push({
            panel: p.title ?? "?",
            expr: t.expr,
            ...(t.legendFormat ? { legend: t.legendFormat } : {}),
          });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels ?? []);
  for (const v of (dash.templating?.list ?? []) as { name?: string; definition?: string }[])
    if (v.definition?.includes("label_values")) out.push({ panel: `variable ${v.name}`, expr: v.definition });
  return out;
}

/** The problems of one query against what is exported (empty: fine). */
function problems(t: Target, have: Map<string, Exported>): string[] {
  const bad: string[] = [];
  const metrics = [...t.expr.matchAll(/\b(?:hubble|membrane|tetragon|cilium)_[a-z0-9_]+\b/g)].map(
    (m) => m[0],
  );
  if (metrics.length === 0) bad.push("names no metric");
  const labels = new Set<string>(SCRAPE_LABELS);
  for (const name of metrics) {
    const base = name.replace(/_(bucket|sum|count)$/, "");
    const e = have.get(name) ?? (have.get(base)?.type === "histogram" ? have.get(base) : undefined);
    if (e === undefined) {
      bad.push(`metric ${name} is not exported`);
      continue;
    }
    for (const l of e.labels) labels.add(l);
    if (name.endsWith("_bucket")) labels.add("le");
  }
  const grouped = new Set<string>();
  for (const m of t.expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g))
    for (const l of (m[1] ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean))
      grouped.add(l);
  for (const m of t.expr.matchAll(/\{([^}]*)\}/g))
    for (const kv of (m[1] ?? "").split(",").filter((s) => s.trim() !== "")) {
      const l = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/.exec(kv)?.[1];
      if (l === undefined) bad.push(`matcher ${kv} is not label=value`);
      else if (!labels.has(l)) bad.push(`label ${l} is not a label of ${metrics.join(", ")}`);
    }
  const label = /label_values\([^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)/.exec(t.expr)?.[1];
  if (label !== undefined && !labels.has(label))
    bad.push(`label ${label} is not a label of ${metrics.join(", ")}`);
  for (const l of grouped)
    if (!labels.has(l)) bad.push(`grouping label ${l} is not a label of ${metrics.join(", ")}`);
  for (const m of (t.legend ?? "").matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g))
    if (!grouped.has(m[1] ?? "")) bad.push(`legend {{${m[1]}}} is not a grouped label`);
  return bad.map((b) => `${t.panel}: ${b} in ${t.expr}`);
}

describe("Grafana dashboard", () => {
  test("every metric and label its queries use is exported by the agent's registries", async () => {
    const dash = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Parameters<typeof targets>[0] & {
      uid?: string;
    };
    assert.equal(dash.uid, "membrane-overview");
    const have = await exported();
    const all = targets(dash);
    assert.ok(all.length >= 15, `${all.length} queries`);
    assert.deepEqual(
      all.flatMap((t) => problems(t, have)),
      [],
    );
    // The dashboard covers flows, drops, policy, L7, loss, the agent and runtime events.
    const used = new Set(
      all.flatMap((t) =>
        [...t.expr.matchAll(/\b(?:hubble|membrane|tetragon)_[a-z_]+?(?=_bucket\b|\b)/g)].map((m) => m[0]),
      ),
    );
    for (const m of [
      "hubble_flows_processed_total",
      "hubble_drop_total",
      "hubble_policy_verdicts_total",
      "hubble_http_requests_total",
      "hubble_lost_events_total",
      "membrane_endpoints",
      "tetragon_events_total",
    ])
      assert.ok(used.has(m), `the dashboard shows ${m}`);
  });

  test("the check catches a renamed metric, an unknown label and a legend of an ungrouped label", async () => {
    const have = await exported();
    const p = (expr: string, legend?: string): string[] =>
      problems({ panel: "p", expr, ...(legend ? { legend } : {}) }, have);
    assert.deepEqual(
      p('sum by (verdict) (rate(hubble_flows_processed_total{instance=~"$i"}[5m]))', "{{verdict}}"),
      [],
    );
    assert.match(p("rate(hubble_flows_total[5m])").join(), /hubble_flows_total is not exported/);
    assert.match(p("sum by (node) (rate(hubble_drop_total[5m]))").join(), /grouping label node/);
    assert.match(p('rate(hubble_drop_total{pod="x"}[5m])').join(), /label pod/);
    assert.match(
      p("sum by (reason) (rate(hubble_drop_total[5m]))", "{{protocol}}").join(),
      /legend \{\{protocol\}\}/,
    );
    assert.match(p("rate(membrane_endpoints_bucket[5m])").join(), /not exported/);
    assert.deepEqual(
      p("histogram_quantile(0.9, sum by (le) (rate(hubble_http_request_duration_seconds_bucket[5m])))"),
      [],
    );
  });
});
