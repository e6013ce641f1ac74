/**
 * The service map page (served by server.ts): plain HTML, one stylesheet and
 * one script, no framework and nothing fetched from elsewhere (the CSP allows
 * 'self' only). The script draws SVG: one column per namespace, then one for
 * what is outside (world, FQDNs, the host, addresses); edges as straight bands,
 * red when something on them was dropped; a click on an edge shows its flows,
 * the policies that decided them and, for a denied edge, why. Texts from the
 * server go into the DOM with textContent only, never as markup.
 *
 * Why by hand: a graph library would be the largest part of the page for a
 * column layout, and Hubble UI's weak point is exactly its layout at hundreds
 * of workloads; 2,000 SVG lines draw in well under a second.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Membrane service map</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1>Membrane service map</h1>
  <label>Namespace <select id="namespace"><option value="">all</option></select></label>
  <label>Verdict <select id="verdict"><option value="">all</option><option value="FORWARDED">forwarded</option><option value="DROPPED">dropped</option></select></label>
  <span id="status"></span>
</header>
<main>
  <div id="map"><svg id="graph" xmlns="http://www.w3.org/2000/svg"></svg></div>
  <aside id="detail"><p class="hint">Click an edge for its flows and the policy that decided them.</p></aside>
</main>
<script src="/app.js"></script>
</body>
</html>
`;

export const PAGE_STYLE = `body { margin: 0; font: 13px system-ui, sans-serif; color: #1d232a; }
header { display: flex; gap: 16px; align-items: center; padding: 8px 12px; background: #f3f5f7; border-bottom: 1px solid #d5dbe1; }
h1 { font-size: 15px; margin: 0 12px 0 0; }
main { display: flex; height: calc(100vh - 45px); }
#map { flex: 1; overflow: auto; }
aside { width: 380px; overflow: auto; border-left: 1px solid #d5dbe1; padding: 8px 12px; }
.ns-title { font-weight: 600; fill: #4a5561; }
.node rect { fill: #fff; stroke: #7a8794; rx: 4; }
.node.outside rect { fill: #f6f1e7; }
.node text { font-size: 12px; fill: #1d232a; pointer-events: none; }
.edge { fill: #3c9d5d; fill-opacity: 0.75; cursor: pointer; }
.edge.denied { fill: #d93025; fill-opacity: 0.9; }
.edge.selected { stroke: #1d232a; stroke-width: 1; fill-opacity: 1; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: 6px; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 2px 4px; border-bottom: 1px solid #eee; font-size: 12px; }
.DROPPED { color: #d93025; font-weight: 600; }
`;

export const PAGE_SCRIPT = `"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COL_W = 240, ROW_H = 30, NODE_W = 190, NODE_H = 22, TOP = 40, LEFT = 20;
let revision = -1, selected = "";
const $ = (id) => document.getElementById(id);
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
function html(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function query() {
  const p = new URLSearchParams();
  if ($("namespace").value) p.set("namespace", $("namespace").value);
  if ($("verdict").value) p.set("verdict", $("verdict").value);
  return p.toString();
}
function layout(g) {
  const cols = [...g.namespaces.filter((n) => g.nodes.some((x) => x.namespace === n)), ""];
  const pos = new Map();
  cols.forEach((ns, c) => {
    const here = g.nodes.filter((n) => n.namespace === ns).sort((a, b) => a.label.localeCompare(b.label));
    here.forEach((n, r) => pos.set(n.id, { x: LEFT + c * COL_W, y: TOP + r * ROW_H, n }));
  });
  return { cols, pos };
}
function draw(g) {
  const t0 = performance.now();
  const svg = $("graph");
  const { cols, pos } = layout(g);
  const rows = Math.max(1, ...cols.map((ns) => g.nodes.filter((n) => n.namespace === ns).length));
  svg.setAttribute("width", String(LEFT * 2 + cols.length * COL_W));
  svg.setAttribute("height", String(TOP + rows * ROW_H + 20));
  const frag = document.createDocumentFragment();
  cols.forEach((ns, c) => frag.appendChild(el("text", { x: LEFT + c * COL_W, y: 22, class: "ns-title" }, ns || "outside")));
  const edges = el("g", { id: "edges" });
  // Edges between the same pair (other ports) side by side, 7 px apart.
  const pairs = new Map();
  for (const e of g.edges) pairs.set(e.from + "|" + e.to, [...(pairs.get(e.from + "|" + e.to) || []), e.id]);
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const same = pairs.get(e.from + "|" + e.to);
    const dy = (same.indexOf(e.id) - (same.length - 1) / 2) * 7;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2 + dy;
    // Within one column: from the right side to the right side, slanted so that it reads as a link.
    const x2 = a === b ? a.x + NODE_W + 40 : a.x === b.x ? b.x + NODE_W + 14 : b.x;
    const y2 = a === b ? y1 + 10 : b.y + NODE_H / 2 + dy;
    // A thin band, not a line: it has an area to click (and a box a test can click the middle of).
    const len = Math.hypot(x2 - x1, y2 - y1) || 1, nx = (-(y2 - y1) / len) * 2.5, ny = ((x2 - x1) / len) * 2.5;
    const band = el("polygon", {
      points: [[x1 + nx, y1 + ny], [x2 + nx, y2 + ny], [x2 - nx, y2 - ny], [x1 - nx, y1 - ny]].map((p) => p.join(",")).join(" "),
      class: "edge" + (e.denied ? " denied" : "") + (e.id === selected ? " selected" : ""),
      "data-id": e.id, "data-from": e.from, "data-to": e.to, "data-port": e.port,
    });
    band.appendChild(el("title", {}, e.from + " -> " + e.to + " " + e.port + (e.l7 ? " " + e.l7 : "") +
      " (forwarded " + e.forwarded + ", dropped " + e.dropped + ")"));
    edges.appendChild(band);
  }
  const nodes = el("g", { id: "nodes" });
  for (const { x, y, n } of pos.values()) {
    const grp = el("g", { class: "node" + (n.kind === "workload" ? "" : " outside"), "data-id": n.id, transform: "translate(" + x + "," + y + ")" });
    grp.appendChild(el("rect", { width: NODE_W, height: NODE_H }));
    grp.appendChild(el("text", { x: 6, y: 15 }, n.label));
    nodes.appendChild(grp);
  }
  frag.appendChild(nodes);
  frag.appendChild(edges);
  svg.replaceChildren(frag);
  const ms = performance.now() - t0;
  document.body.dataset.renderMs = ms.toFixed(1);
  document.body.dataset.edges = String(g.edges.length);
  $("status").textContent = g.nodes.length + " nodes, " + g.edges.length + " edges" + (g.undrawn ? ", " + g.undrawn + " flows not drawn" : "");
}
function namespaces(list) {
  const sel = $("namespace"), cur = sel.value;
  const want = ["", ...list];
  if ([...sel.options].map((o) => o.value).join(",") === want.join(",")) return;
  sel.replaceChildren(...want.map((v) => { const o = html("option", v || "all"); o.value = v; return o; }));
  sel.value = want.includes(cur) ? cur : "";
}
async function refresh(force) {
  const r = await getJson("/api/revision");
  if (r.error) $("status").textContent = "flows: " + r.error;
  if (!force && r.revision === revision) return;
  const g = await getJson("/api/graph?" + query());
  revision = g.revision;
  namespaces(g.namespaces);
  draw(g);
  document.body.dataset.revision = String(revision);
}
async function showEdge(id) {
  selected = id;
  for (const l of document.querySelectorAll(".edge")) l.classList.toggle("selected", l.dataset.id === id);
  const d = await getJson("/api/edge?id=" + encodeURIComponent(id));
  const box = $("detail");
  const parts = [html("h2", d.from + " \\u2192 " + d.to + " " + d.port)];
  parts.push(html("p", "forwarded " + d.forwarded + ", dropped " + d.dropped));
  if (d.policies.length) {
    parts.push(html("h3", "Policies"));
    const ul = html("ul");
    for (const p of d.policies) ul.appendChild(html("li", p));
    parts.push(ul);
  }
  if (d.why) {
    parts.push(html("h3", "Why was this dropped?"));
    parts.push(html("pre", d.why.join("\\n"), "why"));
  }
  parts.push(html("h3", "Latest flows"));
  const t = html("table");
  for (const f of d.flows.slice().reverse()) {
    const tr = html("tr");
    tr.appendChild(html("td", f.time.slice(11, 23)));
    tr.appendChild(html("td", f.verdict, f.verdict));
    tr.appendChild(html("td", f.summary || f.dropReason || ""));
    t.appendChild(tr);
  }
  parts.push(t);
  box.replaceChildren(...parts);
  box.dataset.edge = id;
}
$("graph").addEventListener("click", (ev) => {
  const t = ev.target;
  if (t instanceof SVGElement && t.classList.contains("edge")) void showEdge(t.dataset.id);
});
$("namespace").addEventListener("change", () => void refresh(true));
$("verdict").addEventListener("change", () => void refresh(true));
void refresh(true);
setInterval(() => void refresh(false).catch((e) => ($("status").textContent = String(e))), 1000);
`;
