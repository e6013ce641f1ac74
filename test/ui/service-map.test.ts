/**
 * The service map in a real browser (Debian's chromium driven by
 * playwright-core), on flows of real packets through an agent: workloads by
 * namespace, a red edge for the denied connection, a click on it shows the
 * flows, the deciding policy and why it was dropped; a new connection appears
 * without reloading; the namespace filter narrows the graph. Screenshots are
 * kept in test-artifacts/ui/. Root only (namespaces, nftables).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { AgentClient } from "../../src/agent/client.js";
import type { RunningAgent } from "../../src/agent/run.js";
import { startFlowAgent, type FlowAgent } from "../agent/flow-agent.js";
import { filterFromFlags, isFlowRecord } from "../../src/observe/index.js";
import { Probe } from "../../src/probe/probe.js";
import { UiServer } from "../../src/ui/server.js";

const CHROMIUM = "/usr/bin/chromium";
const skip =
  process.getuid?.() !== 0
    ? "needs root (network namespaces, nftables, NFLOG)"
    : !existsSync(CHROMIUM)
      ? "needs Debian's chromium (scripts/install-system-deps.sh)"
      : undefined;
const ARTIFACTS = join(process.env["MEMBRANE_TEST_ARTIFACTS"] ?? "test-artifacts", "ui");

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-in, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

describe("service map in chromium (root)", { skip }, () => {
  const prefix = "mbu" + randomBytes(2).toString("hex");
  let fa: FlowAgent | undefined;
  let running: RunningAgent | undefined;
  let ui: UiServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const probes: Probe[] = [];
  let apiIp = "";
  let batch: Probe;

  const flowsIn = async (n: number): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const recs = (running?.agent.observer?.read(filterFromFlags({})) ?? []).filter(isFlowRecord);
      if (recs.length >= n) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    fa = await startFlowAgent(prefix, "10.204.0.0/24");
    running = fa.running;
    const socketPath = fa.socketPath;
    const a = running.agent;
    const api = await a.createEndpointRequest({ name: "api-1", namespace: "shop", labels: { app: "api" } });
    const web = await a.createEndpointRequest({ name: "web-1", namespace: "shop", labels: { app: "web" } });
    const bat = await a.createEndpointRequest({
      name: "batch-1",
      namespace: "jobs",
      labels: { app: "batch" },
    });
    await a.applyPolicies(POLICY, "api-in.yaml");
    const [pApi, pWeb, pBatch] = [Probe.start(api.netns), Probe.start(web.netns), Probe.start(bat.netns)];
    probes.push(pApi, pWeb, pBatch);
    batch = pBatch;
    apiIp = api.ipv4;
    for (const port of [80, 81]) await pApi.listen("tcp", port);
    assert.equal(await pWeb.tcp(apiIp, 80), "ok");
    assert.notEqual(await pBatch.tcp(apiIp, 80, 500), "ok");
    await flowsIn(2);
    ui = new UiServer({ agent: new AgentClient({ socketPath }), host: "127.0.0.1", port: 0, history: 1000 });
    const url = await ui.start();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    await page.goto(url);
  });
  after(async () => {
    await browser?.close();
    await ui?.stop();
    for (const p of probes) p.stop();
    await fa?.stop();
  });

  test("workloads by namespace, a green allowed edge and a red denied edge", async () => {
    await page.locator("polygon.edge.denied").first().waitFor({ timeout: 20_000 });
    const ids = await page
      .locator("g.node")
      .evaluateAll((gs) => gs.map((g) => g.getAttribute("data-id")).sort());
    assert.deepEqual(ids, ["jobs/batch", "shop/api", "shop/web"]);
    const edge = async (from: string): Promise<string> =>
      (await page
        .locator(`polygon.edge[data-from="${from}"][data-to="shop/api"][data-port="TCP/80"]`)
        .getAttribute("class")) ?? "";
    assert.match(await edge("jobs/batch"), /\bdenied\b/);
    assert.doesNotMatch(await edge("shop/web"), /\bdenied\b/);
    const titles = await page.locator("text.ns-title").allTextContents();
    assert.deepEqual(titles, ["jobs", "shop", "outside"]);
    await page.screenshot({ path: join(ARTIFACTS, "service-map.png") });
  });

  test("a click on the red edge shows its flows, the policy and why it was dropped", async () => {
    await page.locator('polygon.edge.denied[data-from="jobs/batch"]').click();
    await page.locator("#detail[data-edge]").waitFor();
    const text = (await page.locator("#detail").textContent()) ?? "";
    assert.match(text, /batch → api TCP\/80/);
    assert.match(text, /DROPPED/);
    assert.match(text, /Why was this dropped\?/);
    assert.match(text, /denied by the ingress policy of shop\/api-1/);
    assert.match(text, /fromEndpoints/, "the proposal of `policy why` is shown");
    await page.screenshot({ path: join(ARTIFACTS, "service-map-drilldown.png") });
  });

  test("a new connection appears without a reload; the namespace filter narrows the graph", async () => {
    assert.notEqual(await batch.tcp(apiIp, 81, 500), "ok");
    await page
      .locator('polygon.edge[data-from="jobs/batch"][data-port="TCP/81"]')
      .waitFor({ timeout: 20_000 });
    await page.selectOption("#namespace", "shop");
    await page.locator('g.node[data-id="jobs/batch"]').waitFor();
    await page.selectOption("#verdict", "FORWARDED");
    await page.locator("polygon.edge.denied").first().waitFor({ state: "detached" });
    const ids = await page
      .locator("g.node")
      .evaluateAll((gs) => gs.map((g) => g.getAttribute("data-id")).sort());
    assert.deepEqual(ids, ["shop/api", "shop/web"]);
  });
});
