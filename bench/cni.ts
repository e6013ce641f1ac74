/**
 * CNI benchmark (needs root, containernetworking-plugins, podman; issue 17 item 6):
 * an agent with 100 existing endpoints and a policy, membrane-cni chained after
 * `ptp`, called
 *   direct   as a runtime calls it (test/cni/runtime.ts: ptp, then membrane-cni, as processes
 *            in the node namespace): ADD and DEL latency of membrane-cni alone and of the chain;
 *   podman   `podman run -d` (bridge + membrane-cni, test/cni/podman.ts) until the agent logged
 *            the endpoint adopted (logged after its policy is in the kernel), the whole
 *            `podman run`, and `podman stop` (DEL through the runtime).
 *
 *   The direct ADDs alternate the native shim (dist/bin/membrane-cni, installed) and the Node plugin
 *   (bin/membrane-cni.js), A/B in one run; figures without "Node" are the shim's.
 *
 *   standalone (--standalone: membrane-cni alone, the agent wires the container; no podman part):
 *            ADD and DEL latency and the plugin process's CPU time.
 *
 *   npm run bench -- cni [--quick] [--bridge | --standalone]  -> one JSON line per figure, with the load average
 *
 * Target: membrane-cni ADD p99 < 150 ms direct. Scratch namespaces: "mx5<hex>", removed at the end.
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import type { CniLab } from "../test/cni/harness.js";
import { Podman } from "../test/cni/podman.js";
import { execPlugin, PLUGIN_BINARIES, type PluginRun } from "../test/cni/runtime.js";
import { pct, r1 } from "./traffic.js";
import { benchArgs, flag } from "./cli.js";

const { flags } = benchArgs({
  script: "cni",
  runner: "cni",
  measures: "membrane-cni ADD/DEL latency with 100 existing endpoints: called as a runtime calls it (the native shim and the Node plugin, A/B), and through podman run/stop; or membrane-cni alone (--standalone). One JSON line per figure, with the load. Target: ADD p99 < 150 ms direct.", // prettier-ignore
  root: "an agent, node and container namespaces; needs containernetworking-plugins and podman",
  flags: {
    quick: flag("fewer samples (10 direct, 3 through podman instead of 60 and 15)"),
    bridge: flag("chain membrane-cni after bridge instead of ptp"),
    standalone: flag("membrane-cni alone, the agent wires the container (no podman part)"),
  },
});
const quick = flags.quick;
const EXISTING = 100;
const DIRECT = quick ? 10 : 60;
const PODMAN = quick ? 3 : 15;

const out = (o: Record<string, unknown>): void =>
  console.log(JSON.stringify({ bench: "cni", ...o, load1m: r1(loadavg()[0] ?? 0) }));
const stats = (ms: readonly number[]) => ({
  samples: ms.length,
  p50Ms: r1(pct(ms, 0.5)),
  p99Ms: r1(pct(ms, 0.99)),
  maxMs: r1(Math.max(...ms)),
});

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

async function direct(c: CniLab): Promise<void> {
  const addChain: number[] = [];
  const addOurs: number[] = [];
  const delChain: number[] = [];
  const delOurs: number[] = [];
  const plugins = c.rt.p.conflist.plugins;
  const confOf = (i: number, prev: unknown): string =>
    JSON.stringify({
      ...plugins[i],
      cniVersion: c.rt.p.conflist.cniVersion,
      name: c.rt.p.conflist.name,
      ...(prev !== undefined ? { prevResult: prev } : {}),
    });
  const env = (cmd: string, att: { containerId: string; netns: string; ifname: string }) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: att.containerId,
    CNI_NETNS: att.netns,
    CNI_IFNAME: att.ifname,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${att.containerId};MEMBRANE_LABELS=app:server`,
    CNI_PATH: c.rt.p.pluginDirs.join(":"),
  });
  // A/B interleaved: even samples the native shim (installed as membrane-cni), odd ones the Node plugin.
  const binaries = [join(c.pluginDir, "membrane-cni"), PLUGIN_BINARIES.node] as const;
  const nodeAdd: number[] = [];
  const nodeCpu: number[] = [];
  const agentMs: Record<string, number[]> = { queuedMs: [], linkMs: [], enforceMs: [] };
  const cpu: number[] = [];
  const TIME = ["/usr/bin/time", "-f", "cpu %U %S"];
  const cpuOf = (stderr: string): number => {
    const m = /cpu ([\d.]+) ([\d.]+)/.exec(stderr);
    return m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN;
  };
  for (let i = 0; i < 2 * DIRECT; i++) {
    const node = i % 2 === 1;
    const ours = binaries[node ? 1 : 0];
    const att = await c.sandbox(`d${i}`);
    const [ptp, tPtp] = await timed(() =>
      execPlugin("/usr/lib/cni/ptp", env("ADD", att), confOf(0, undefined), c.lab.node),
    );
    if (ptp.status !== 0) throw new Error(`ptp ADD: ${ptp.stdout}`);
    const from = c.lab.logs.length;
    const [add, tAdd] = await timed(() =>
      execPlugin(ours, env("ADD", att), confOf(1, ptp.json), c.lab.node, TIME),
    );
    if (add.status !== 0) throw new Error(`membrane-cni ADD: ${add.stdout}`);
    if (node) {
      nodeAdd.push(tAdd);
      nodeCpu.push(cpuOf(add.stderr));
    }
    if (node) await cleanup(c, att, ours, env, confOf, add);
    if (node) continue;
    cpu.push(cpuOf(add.stderr));
    const line = c.lab.logs.slice(from).find((l) => l["msg"] === "cni endpoint adopted") ?? {};
    for (const k of Object.keys(agentMs)) agentMs[k]?.push(Number(line[k]));
    addOurs.push(tAdd);
    addChain.push(tPtp + tAdd);
    const [del, tDel] = await timed(() => execPlugin(ours, env("DEL", att), confOf(1, add.json), c.lab.node));
    if (del.status !== 0) throw new Error(`membrane-cni DEL: ${del.stdout}`);
    const [, tPtpDel] = await timed(() =>
      execPlugin("/usr/lib/cni/ptp", env("DEL", att), confOf(0, add.json), c.lab.node),
    );
    delOurs.push(tDel);
    delChain.push(tDel + tPtpDel);
    await c.lab.ip(["netns", "del", att.netns.slice("/run/netns/".length)]);
  }
  const existing = EXISTING;
  const p99 = pct(addOurs, 0.99);
  out({
    figure: "add-direct",
    plugin: "membrane-cni",
    existing,
    ...stats(addOurs),
    target: "p99 < 150",
    ok: p99 < 150,
  });
  out({ figure: "add-direct", plugin: "ptp+membrane-cni", existing, ...stats(addChain) });
  out({ figure: "add-direct membrane-cni process CPU (user+sys)", existing, ...stats(cpu) });
  out({ figure: "add-direct", plugin: "membrane-cni.js (Node, interleaved)", existing, ...stats(nodeAdd) });
  out({ figure: "add-direct membrane-cni.js process CPU (user+sys)", existing, ...stats(nodeCpu) });
  for (const [k, v] of Object.entries(agentMs))
    out({ figure: `add-direct agent ${k}`, existing, ...stats(v) });
  out({ figure: "del-direct", plugin: "membrane-cni", existing, ...stats(delOurs) });
  out({ figure: "del-direct", plugin: "membrane-cni+ptp", existing, ...stats(delChain) });
}

/** DEL of a Node-plugin sample (membrane-cni, then ptp) and its namespace, unmeasured. */
async function cleanup(
  c: CniLab,
  att: { containerId: string; netns: string; ifname: string },
  ours: string,
  env: (cmd: string, a: typeof att) => Record<string, string>,
  confOf: (i: number, prev: unknown) => string,
  add: PluginRun,
): Promise<void> {
  const del = await execPlugin(ours, env("DEL", att), confOf(1, add.json), c.lab.node);
  if (del.status !== 0) throw new Error(`membrane-cni DEL: ${del.stdout}`);
  await execPlugin("/usr/lib/cni/ptp", env("DEL", att), confOf(0, add.json), c.lab.node);
  await c.lab.ip(["netns", "del", att.netns.slice("/run/netns/".length)]);
}

/** membrane-cni alone (standalone): ADD and DEL as a runtime calls them, in fresh namespaces. */
async function directStandalone(c: CniLab): Promise<void> {
  const add: number[] = [];
  const del: number[] = [];
  const cpu: number[] = [];
  const conf = JSON.stringify({
    ...c.rt.p.conflist.plugins[0],
    cniVersion: c.rt.p.conflist.cniVersion,
    name: c.rt.p.conflist.name,
  });
  const ours = join(c.pluginDir, "membrane-cni");
  for (let i = 0; i < DIRECT; i++) {
    const att = await c.sandbox(`s${i}`);
    const env = (cmd: string) => ({
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: att.containerId,
      CNI_NETNS: att.netns,
      CNI_IFNAME: att.ifname,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${att.containerId};MEMBRANE_LABELS=app:server`,
      CNI_PATH: c.rt.p.pluginDirs.join(":"),
    });
    const [a, tAdd] = await timed(() =>
      execPlugin(ours, env("ADD"), conf, c.lab.node, ["/usr/bin/time", "-f", "cpu %U %S"]),
    );
    if (a.status !== 0) throw new Error(`membrane-cni ADD: ${a.stdout}`);
    const m = /cpu ([\d.]+) ([\d.]+)/.exec(a.stderr);
    cpu.push(m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN);
    add.push(tAdd);
    const [d, tDel] = await timed(() => execPlugin(ours, env("DEL"), conf, c.lab.node));
    if (d.status !== 0) throw new Error(`membrane-cni DEL: ${d.stdout}`);
    del.push(tDel);
    await c.lab.ip(["netns", "del", att.netns.slice("/run/netns/".length)]);
  }
  const ok = pct(add, 0.99) < 150;
  out({ figure: "add-direct", plugin: "membrane-cni standalone", existing: EXISTING, ...stats(add), target: "p99 < 150", ok }); // prettier-ignore
  out({ figure: "add-direct standalone membrane-cni process CPU (user+sys)", existing: EXISTING, ...stats(cpu) }); // prettier-ignore
  out({ figure: "del-direct", plugin: "membrane-cni standalone", existing: EXISTING, ...stats(del) });
}

async function podman(c: CniLab): Promise<void> {
  const p = new Podman(join(c.dir, "podman"), c.lab.node);
  const run: number[] = [];
  const enforced: number[] = [];
  const stop: number[] = [];
  try {
    await p.prepare(c.pluginDir, c.rt.p.conflist);
    const net = c.rt.p.conflist.name;
    for (let i = 0; i < PODMAN; i++) {
      const from = c.lab.logs.length;
      const t0 = Date.now();
      const [id, tRun] = await timed(() =>
        p.runServer(`p${i}`, net, [], { CNI_ARGS: "MEMBRANE_LABELS=app:server" }),
      );
      const adopted = c.lab.logs.slice(from).find((l) => l["msg"] === "cni endpoint adopted");
      if (!adopted) throw new Error("podman run returned without the endpoint adopted");
      run.push(tRun);
      enforced.push(Number(adopted["time"]) - t0);
      const [, tStop] = await timed(() => p.run(["stop", "-t", "0", id.trim()]));
      stop.push(tStop);
      await p.run(["rm", id.trim()]);
    }
  } finally {
    await p.destroy();
  }
  out({ figure: "podman-run-to-enforced", existing: EXISTING, ...stats(enforced) });
  out({ figure: "podman-run", existing: EXISTING, ...stats(run) });
  out({ figure: "podman-stop (DEL)", existing: EXISTING, ...stats(stop) });
}

async function main(): Promise<void> {
  const standalone = flags.standalone;
  const kind = standalone ? "standalone" : flags.bridge ? "bridge" : "ptp";
  // Loaded once the command line is read: --help answers without the agent's modules (~2 s of CPU).
  const c = await (await import("../test/cni/harness.js")).CniLab.start(kind, "10.89.20.0/23");
  const stopping = (): void => void c.destroy().then(() => process.exit(130));
  process.once("SIGINT", stopping);
  try {
    for (let i = 0; i < EXISTING; i++)
      await c.lab.agent.createEndpointRequest({
        name: `e${i}`,
        namespace: "default",
        labels: { app: i % 2 ? "client" : "filler" },
      });
    await c.lab.agent.applyPolicies(POLICY, "bench.yaml");
    if (standalone) {
      await directStandalone(c);
      return;
    }
    await direct(c);
    await podman(c);
  } finally {
    process.off("SIGINT", stopping);
    await c.destroy();
  }
}

await main();
