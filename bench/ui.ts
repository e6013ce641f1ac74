/**
 * Service map benchmark (`npm run bench -- ui`): time for the page to show a
 * graph of 500 workloads in 10 namespaces and 2,000 edges (a quarter denied)
 * in Debian's chromium, from navigation to the first drawn graph, and the
 * draw itself (the page's own measure, body[data-render-ms]); then a redraw
 * after 500 more flows. Synthetic flows go straight into the server's graph
 * (no agent: the page's input is the same). JSON lines. Target: first render < 1 s.
 */
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { AgentClient } from "../src/agent/client.js";
import type { Flow } from "../src/observe/index.js";
import { UiServer } from "../src/ui/server.js";
import { benchArgs } from "./cli.js";

const CHROMIUM = "/usr/bin/chromium";

function flow(i: number, from: number, to: number, port: number, dropped: boolean): Flow {
  const ep = (w: number) => ({
    identity: 1000 + w,
    namespace: `ns${w % 10}`,
    pod_name: `w${w}-0`,
    labels: [`k8s:app=w${w}`],
  });
  return {
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(),
    verdict: dropped ? "DROPPED" : "FORWARDED",
    source: ep(from),
    destination: ep(to),
    IP: {
      source: `10.1.${from >> 8}.${from & 255}`,
      destination: `10.1.${to >> 8}.${to & 255}`,
      ipVersion: "IPv4",
    },
    l4: { TCP: { source_port: 40000, destination_port: port } },
    Type: "L3_L4",
    event_type: { type: dropped ? 1 : 5 },
    traffic_direction: "INGRESS",
  } as unknown as Flow;
}

async function main(): Promise<void> {
  benchArgs({
    script: "ui",
    runner: "ui",
    measures: "The service map in Debian's chromium: time from navigation to the first drawn graph of 500 workloads in 10 namespaces and 2,000 edges, the draw itself, and a redraw after 500 more flows. JSON lines. Target: first render < 1 s.", // prettier-ignore
    root: false,
    notes: ["Needs /usr/bin/chromium (scripts/install-system-deps.sh)."],
    flags: {},
  });
  if (!existsSync(CHROMIUM)) throw new Error("needs Debian's chromium (scripts/install-system-deps.sh)");
  const ui = new UiServer({
    agent: new AgentClient({ socketPath: "/nonexistent/agent.sock" }),
    host: "127.0.0.1",
    port: 0,
    history: 0,
  });
  const url = await ui.start();
  const workloads = 500;
  const edges = 2000;
  for (let i = 0; i < edges; i++) {
    const from = i % workloads;
    const to = (from * 7 + 1 + Math.floor(i / workloads)) % workloads;
    ui.graph.add(flow(i, from, to, 80 + (i % 3), i % 4 === 0));
  }
  // Loaded once the command line is read: --help answers without playwright's modules.
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const t0 = performance.now();
    await page.goto(url);
    await page.locator("body[data-revision]").waitFor();
    const firstMs = performance.now() - t0;
    const drawMs = Number(await page.locator("body").getAttribute("data-render-ms"));
    const drawn = Number(await page.locator("body").getAttribute("data-edges"));
    const rev = ui.graph.revision;
    for (let i = 0; i < 500; i++)
      ui.graph.add(flow(edges + i, i % workloads, (i + 3) % workloads, 443, false));
    const t1 = performance.now();
    await page.locator(`body[data-revision="${ui.graph.revision}"]`).waitFor();
    const updateMs = performance.now() - t1;
    const redrawMs = Number(await page.locator("body").getAttribute("data-render-ms"));
    console.log(
      JSON.stringify({
        bench: "ui",
        figure: "service-map-render",
        workloads,
        edges: drawn,
        firstRenderMs: Math.round(firstMs),
        drawMs,
        liveUpdateMs: Math.round(updateMs),
        redrawMs,
        revisionBefore: rev,
        note: "first render: navigation to drawn graph; live update: 500 flows added to a drawn page, seen by its 1 s poll",
        target: "first render < 1000 ms",
        ok: firstMs < 1000,
        load1m: Math.round(loadavg()[0]! * 10) / 10,
      }),
    );
  } finally {
    await browser.close();
    await ui.stop();
  }
}

await main();
