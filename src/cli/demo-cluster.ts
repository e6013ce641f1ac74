/**
 * `membrane demo --nodes N` (2..5): Cilium's Star Wars across nodes, on real packets.
 *
 *   etcd (loopback) + N node namespaces on an underlay bridge, a real `membrane agent
 *   --cluster-store` process per node (src/lab/cluster.ts)
 *     -> deathstar on n1, tiefighter on n2, xwing on n3 (n2 with two nodes), made through each node's API
 *     -> traffic across nodes with no policy, then rule1 applied ONCE (through n1, --wait: every node)
 *     -> who reached whom, the receiving node's flows naming both sides' nodes, why xwing was dropped
 *     -> everything removed (also on Ctrl-C)
 *
 * Nothing outside the scratch namespaces and loopback is touched. `demo.ts` is the one-node demo.
 */
import { randomBytes } from "node:crypto";
import type { ApplyReport } from "../agent/controllers/policies.js";
import type { NodeView } from "../cluster/routes.js";
import { MembraneError } from "../errors.js";
import { applyAndWait, createEndpoint, readFlows, waitRemote } from "../lab/cluster-api.js";
import { startLabCluster, type LabCluster, type LabNode } from "../lab/cluster.js";
import { etcdBinary } from "../lab/etcd.js";
import { formatCompact } from "../observe/index.js";
import type { Flow } from "../observe/flow.js";
import type { FlowFilterSet } from "../observe/filter.js";
import { Probe } from "../probe/probe.js";
import { ATTEMPTS_L3L4, ATTEMPTS_OPEN, indent, preflight, STARWARS_L3L4, type Attempt } from "./demo.js";
import { table } from "./format.js";
import type { EncryptionStatus } from "../encryption/mode.js";
import { encryptionRows } from "./commands/encryption.js";

export const MAX_DEMO_NODES = 5;

export type DemoEncryption = "wireguard" | "ipsec" | "mtls-tunnel";
const MODE_NAMES: Readonly<Record<DemoEncryption, string>> = {
  wireguard: "WireGuard",
  ipsec: "IPsec",
  "mtls-tunnel": "The mTLS node tunnel",
};

const SHIPS = [
  { name: "deathstar", labels: { org: "empire", class: "deathstar" }, node: 0 },
  { name: "tiefighter", labels: { org: "empire", class: "tiefighter" }, node: 1 },
  { name: "xwing", labels: { org: "alliance", class: "xwing" }, node: 2 },
] as const;

interface Ship {
  readonly name: string;
  readonly node: LabNode;
  readonly ip: string;
  readonly identity: number;
  readonly probe: Probe;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the demo on `nodes` nodes; returns the number of attempts that did not end as Cilium would. */
export async function runClusterDemo(o: {
  readonly out: (s: string) => void;
  readonly nodes: number;
  /** `--encryption wireguard|ipsec|mtls-tunnel`: every agent encrypts pod traffic between nodes (strict mode on). */
  readonly encryption?: DemoEncryption;
}): Promise<number> {
  preflight();
  if (etcdBinary() === undefined) {
    throw new MembraneError("CLI_USAGE", "Cannot run the demo on several nodes: `etcd` is not installed", {
      hint: "install the system packages: sudo bash scripts/install-system-deps.sh (Debian: etcd-server)",
    });
  }
  const prefix = "mbd" + randomBytes(2).toString("hex");
  const abort = new AbortController();
  const ships = new Map<string, Ship>();
  let lab: LabCluster | undefined;
  let interrupted = false;
  const cleanup = async (): Promise<void> => {
    for (const s of ships.values()) s.probe.stop();
    ships.clear();
    await lab?.stop();
  };
  const exit = (): never => {
    if (!outBroken) o.out("cleaned up: agents and etcd stopped, namespaces and state removed\n");
    process.exit(130);
  };
  const onSignal = (): void => {
    if (interrupted) return;
    interrupted = true;
    if (!outBroken) o.out("\ninterrupted: cleaning up ...\n"); // then nothing more of the steps (say)
    abort.abort(); // a start under way removes what it made and rejects (below)
    if (lab) void cleanup().finally(() => exit());
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // Output closed under us (`membrane demo --nodes 3 | head`): clean up as on Ctrl-C, not die
  // of EPIPE leaving agents and etcd (their own process groups) running.
  let outBroken = false;
  const onOutError = (): void => {
    outBroken = true;
    onSignal();
  };
  // The CLI's own handler exits at once on EPIPE (cli/main.ts): set aside while the demo runs.
  const cliHandlers = process.stdout.listeners("error") as ((e: Error) => void)[];
  process.stdout.removeAllListeners("error");
  process.stdout.on("error", onOutError);
  // etcd's client (grpc) warns DEP0123 when TLS goes to an address (127.0.0.1): not news to the user.
  process.noDeprecation = true;
  let mismatches = 0;
  const say = (text: string): void => {
    if (!interrupted) o.out(text);
  };
  try {
    say(`Membrane demo on ${o.nodes} nodes: Cilium's Star Wars across nodes, one etcd, an agent per node\n`);
    say(`scratch namespaces ${prefix}-*, etcd on 127.0.0.1 only\n\n`);
    say("Starting (etcd, the underlay bridge, a node namespace and a `membrane agent` process per node):\n");
    lab = await startLabCluster({
      prefix,
      nodes: o.nodes,
      ...(o.encryption ? { encryption: o.encryption, encryptionStrict: true } : {}),
      tls: true, // loopback is every local user's: the demo's etcd wants a client certificate
      log: (l) => say(`  ${l}\n`),
      signal: abort.signal,
    });
    const nodes = lab.nodes;
    const first = nodes[0] as LabNode;
    const views = (await first.client.request("GET", "/v1/nodes")) as NodeView[];
    say("\nNodes (membrane get nodes):\n");
    say(
      indent(
        table([
          ["NAME", "ADDRESS", "POD CIDR", "ROUTING"],
          ...views.map((v) => [v.name, v.addresses.ipv4 ?? "", v.podCidrs.join(","), v.routing ?? ""]),
        ]),
      ) + "\n\n",
    );

    const rows: string[][] = [["ENDPOINT", "NODE", "LABELS", "ADDRESS", "IDENTITY"]];
    for (const s of SHIPS) {
      const node = nodes[Math.min(s.node, nodes.length - 1)] as LabNode;
      const v = await createEndpoint(node, s.name, s.labels);
      const probe = Probe.start(v.netns);
      ships.set(s.name, { name: s.name, node, ip: v.ipv4, identity: v.identity, probe });
      await probe.listenHttp(80);
      await probe.listen("tcp", 8080);
      const labels = Object.entries(s.labels).map(([k, x]) => `${k}=${x}`);
      rows.push([`default/${s.name}`, node.name, labels.join(","), v.ipv4, String(v.identity)]);
    }
    say("Endpoints, each made through its own node's API (one network namespace each):\n");
    say(indent(table(rows)) + "\n");
    // Every node learns the others' pods from etcd (cluster/ipcache/): wait before sending.
    for (const s of ships.values()) {
      const others = [...ships.values()].filter((x) => x.node !== s.node).map((x) => x.ip);
      await waitRemote(s.node, others);
    }
    say("  every node knows the pods of the others (cluster ipcache in etcd)\n");
    if (o.encryption) {
      // The first connection of a pair may wait for its SA or tunnel session: not a verdict.
      const pairs = new Set([...ATTEMPTS_OPEN, ...ATTEMPTS_L3L4].map((a) => `${a.from}>${a.to}`));
      for (const [from, to] of [...pairs].map((p) => p.split(">")))
        await warm(ships.get(from as string) as Ship, ships.get(to as string) as Ship, 80);
      say("  the encrypted paths between the nodes carry traffic (their first connections went through)\n");
    }
    say("\n");

    const attempt = async (title: string, list: readonly Attempt[]): Promise<void> => {
      say(title + "\n");
      const out: string[][] = [["FROM", "TO", "RESULT"]];
      for (const a of list) {
        const from = ships.get(a.from) as Ship;
        const to = ships.get(a.to) as Ship;
        const r = await from.probe.tcp(to.ip, a.port, 600);
        const got = r === "ok" ? "allow" : r === "timeout" ? "deny" : "error";
        if (got !== a.expect) mismatches++;
        const text = got === "allow" ? "reached" : got === "deny" ? "DROPPED" : `error (${r})`;
        const expected = a.expect === "allow" ? "reached" : "DROPPED";
        out.push([
          `${a.from} (${from.node.name})`,
          `${a.to}:${a.port}/TCP (${to.node.name})`,
          text + (got !== a.expect ? `   <-- expected ${expected}` : ""),
        ]);
      }
      say(indent(table(out)) + "\n\n");
    };

    await attempt("Step 1: no policy. Every ship can land, across nodes:", ATTEMPTS_OPEN);
    say(`Step 2: apply rule1 ONCE, through ${first.name} (membrane apply -f rule1.yaml --wait):\n`);
    say(indent(STARWARS_L3L4.trimEnd().split("\n")) + "\n");
    const { report, nodes: realized } = await applyAndWait(first, STARWARS_L3L4, "rule1.yaml");
    say(`  -> ${appliedText(report)}, realized by ${realized.map((n) => n.node).join(", ")}\n\n`);
    await attempt("Step 3: traffic under rule1, enforced by the receiving node:", ATTEMPTS_L3L4);

    const deathstar = ships.get("deathstar") as Ship;
    const flows = await receivingFlows(deathstar.node, [...ships.values()]);
    say(`Flows ${deathstar.node.name} reported for the deathstar (membrane observe, both sides' nodes):\n`);
    say(
      flows.length
        ? indent(flows.map((f) => formatCompact({ flow: f, time: f.time }))) + "\n\n"
        : "  (none)\n\n",
    );
    const xwing = ships.get("xwing") as Ship;
    say(`Why was xwing's connection dropped? (membrane policy why, on ${deathstar.node.name})\n`);
    say(indent(await why(deathstar.node, xwing)) + "\n\n");
    let inSync = 0;
    for (const n of nodes) {
      const d = (await n.client.request("GET", "/v1/datapath/diff")) as { diff: unknown[] };
      if (d.diff.length === 0) inSync++;
    }
    say(`Kernel vs desired state: in sync on ${inSync} of ${nodes.length} nodes\n`);
    if (o.encryption) {
      const s = (await deathstar.node.client.request("GET", "/v1/encryption")) as EncryptionStatus;
      say(
        `\n${MODE_NAMES[o.encryption]} on ${deathstar.node.name} (membrane encryption status): cross-node traffic above went through it\n`,
      );
      say(indent(table(encryptionRows(s))) + "\n");
      // Both ends' view: the receiving node's flows above, and the sending nodes' flows to the
      // deathstar (the mTLS tunnel delivers from its own socket on the receiving node).
      const sent = await sendingFlows(deathstar, [...ships.values()]);
      const all = [...flows, ...sent];
      const flowsEnc = all.filter((f) => f.IP?.encrypted === true).length;
      say(`  ${flowsEnc} of ${all.length} cross-node flows (both ends) carry IP.encrypted: true\n\n`);
    }
    say(
      mismatches === 0
        ? "Every attempt ended as Cilium would have it.\n"
        : `${mismatches} attempts did not end as expected.\n`,
    );
  } catch (e) {
    if (interrupted) {
      await cleanup().catch(() => undefined);
      exit();
    }
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!outBroken) {
      process.stdout.off("error", onOutError);
      for (const h of cliHandlers) process.stdout.on("error", h);
    }
    if (!interrupted) {
      await cleanup();
      say("cleaned up: agents and etcd stopped, namespaces and state removed\n");
    }
  }
  return mismatches;
}

function appliedText(r: ApplyReport): string {
  return `stored in etcd at revision ${r.clusterRevision ?? "?"}`;
}

/** Connects `from` -> `to` until it goes through (safety net 30 s). */
async function warm(from: Ship, to: Ship, port: number): Promise<void> {
  for (const end = Date.now() + 30_000; Date.now() < end; await sleep(200))
    if ((await from.probe.tcp(to.ip, port, 3000)) === "ok") return;
}

/**
 * The policy verdicts `node` logged for connections from the ships (the kernel's log is
 * asynchronous): by their addresses, or (the mTLS tunnel delivers from the node's own pod gateway
 * address, marked with the identity its certificate proved) by their identities.
 */
async function receivingFlows(node: LabNode, ships: readonly Ship[]): Promise<Flow[]> {
  const remote = ships.filter((s) => s.node !== node);
  const verdict: ("FORWARDED" | "DROPPED")[] = ["FORWARDED", "DROPPED"];
  const filter: FlowFilterSet = {
    allowlist: [
      { source_ip: remote.map((s) => s.ip), verdict },
      { source_identity: remote.map((s) => s.identity), verdict },
    ],
  };
  const deadline = Date.now() + 5_000; // a safety net: the log arrives in milliseconds
  let flows = await readFlows(node, filter);
  while (flows.filter((f) => f.verdict === "DROPPED").length < 2 && Date.now() < deadline) {
    await sleep(100);
    flows = await readFlows(node, filter);
  }
  return flows;
}

/** The flows the other ships' nodes logged for their connections to `to` (egress side). */
async function sendingFlows(to: Ship, ships: readonly Ship[]): Promise<Flow[]> {
  const out: Flow[] = [];
  for (const n of new Set(ships.filter((s) => s.node !== to.node).map((s) => s.node)))
    out.push(...(await readFlows(n, { allowlist: [{ destination_ip: [to.ip] }] })));
  return out;
}

/** `membrane policy why` for the last drop from `ship` on `node` (by its address or its identity). */
async function why(node: LabNode, ship: Ship): Promise<string[]> {
  try {
    const r = (await node.client.request("POST", "/v1/why", {
      filter: { allowlist: [{ source_ip: [ship.ip] }, { source_identity: [ship.identity] }] },
    })) as { lines: string[]; proposal?: string };
    return [
      ...r.lines,
      ...(r.proposal
        ? r.proposal
            .trimEnd()
            .split("\n")
            .map((l) => `  ${l}`)
        : []),
    ];
  } catch (e) {
    return [`(no explanation: ${e instanceof Error ? e.message : String(e)})`];
  }
}
