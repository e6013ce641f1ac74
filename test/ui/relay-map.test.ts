/**
 * The service map of the whole cluster, through the relay, in a real browser (Debian's chromium
 * driven by playwright-core): two nodes' Observer APIs (the agent's own HubbleServer over a ring
 * per node, on unix sockets: no kernel, no root), `membrane relay` merging them, and `membrane ui
 * --server` reading the relay. An allowed edge recorded on n1 and a denied edge recorded on n2
 * appear on one map; a connection n2 records later appears without a reload; the drill-down of
 * the red edge shows its flow. Screenshots are kept in test-artifacts/ui/.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { chromium, type Browser, type Page } from "playwright-core";
import type { Flow } from "../../src/observe/flow.js";
import { startRelay, type RunningRelay } from "../../src/relay/relay.js";
import { UiServer } from "../../src/ui/server.js";
import { fakeNodes, flowAt, type FakeNodes } from "../relay/harness.js";

const CHROMIUM = "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? undefined : "needs Debian's chromium (scripts/install-system-deps.sh)";
const ARTIFACTS = join(process.env["MEMBRANE_TEST_ARTIFACTS"] ?? "test-artifacts", "ui");

/** A flow `from` -> shop/api on `port`, recorded by `node`. */
function flow(
  node: string,
  from: { ns: string; app: string },
  port: number,
  verdict: "FORWARDED" | "DROPPED",
): Flow {
  const f = flowAt(Date.now(), node, verdict);
  return {
    ...f,
    l4: { TCP: { source_port: 40000, destination_port: port, flags: { SYN: true } } },
    source: {
      identity: 1000,
      namespace: from.ns,
      labels: [`k8s:app=${from.app}`],
      pod_name: `${from.app}-1`,
    },
    destination: { identity: 1001, namespace: "shop", labels: ["k8s:app=api"], pod_name: "api-1" },
  };
}

describe("service map through the relay, in chromium", { skip }, () => {
  let fake: FakeNodes;
  let relay: RunningRelay | undefined;
  let ui: UiServer | undefined;
  let browser: Browser | undefined;
  let page: Page;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    fake = await fakeNodes(2, 1000, "hhb-ui-");
    const [n1, n2] = fake.nodes;
    assert.ok(n1 && n2);
    n1.ring.pushFlow(flow("n1", { ns: "shop", app: "web" }, 80, "FORWARDED"));
    n2.ring.pushFlow(flow("n2", { ns: "jobs", app: "batch" }, 80, "DROPPED"));
    const socket = join(fake.dir, "relay.sock");
    relay = await startRelay({
      nodes: { peers: fake.peers },
      socketPath: socket,
      merge: { windowMs: 50, maxBuffered: 1000 },
      healthMs: 200,
      version: "test",
      logger: pino({ level: "silent" }),
    });
    ui = new UiServer({ hubble: { address: `unix:${socket}` }, host: "127.0.0.1", port: 0, history: 1000 });
    const url = await ui.start();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    await page.goto(url);
  });

  after(async () => {
    await browser?.close();
    await ui?.stop();
    await relay?.stop();
    await fake?.destroy();
  });

  test("both nodes' workloads on one map: a green edge seen by n1, a red one seen by n2", async () => {
    await page.locator("polygon.edge.denied").first().waitFor({ timeout: 20_000 });
    await page.locator('polygon.edge[data-from="shop/web"]').waitFor({ timeout: 20_000 });
    const ids = await page
      .locator("g.node")
      .evaluateAll((gs) => gs.map((g) => g.getAttribute("data-id")).sort());
    assert.deepEqual(ids, ["jobs/batch", "shop/api", "shop/web"]);
    const cls = async (from: string): Promise<string> =>
      (await page
        .locator(`polygon.edge[data-from="${from}"][data-to="shop/api"][data-port="TCP/80"]`)
        .getAttribute("class")) ?? "";
    assert.match(await cls("jobs/batch"), /\bdenied\b/);
    assert.doesNotMatch(await cls("shop/web"), /\bdenied\b/);
    await page.screenshot({ path: join(ARTIFACTS, "relay-map.png") });
  });

  test("a connection n2 records later appears without a reload; its drill-down shows the flow", async () => {
    fake.nodes[1]?.ring.pushFlow(flow("n2", { ns: "jobs", app: "batch" }, 81, "DROPPED"));
    const edge = page.locator('polygon.edge.denied[data-from="jobs/batch"][data-port="TCP/81"]');
    await edge.waitFor({ timeout: 20_000 });
    await edge.click();
    await page.locator("#detail[data-edge]").waitFor();
    const text = (await page.locator("#detail").textContent()) ?? "";
    assert.match(text, /batch → api TCP\/81/);
    assert.match(text, /DROPPED/);
    await page.screenshot({ path: join(ARTIFACTS, "relay-map-drilldown.png") });
  });
});
