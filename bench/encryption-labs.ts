/**
 * The labs of the encryption benchmark (encryption.ts): one two-node lab cluster per mode
 * (`--encryption wireguard|ipsec|mtls-tunnel`, agents with `--resync 0`), each with a client pod on
 * n1 and a server pod on n2 (iperf3 and the ping-pong server in it), and the three states the
 * benchmark puts a lab's datapath in before a window:
 *
 *   plaintext  wireguard/ipsec: the routes to the peer's pod CIDR swapped to native ones by hand
 *              (ipsec: and charon's rule 220 taken away); mtls-tunnel: the encryption table
 *              without its redirect. Nothing puts them back meanwhile (--resync 0).
 *   encrypted  as the agents made it: routes into the tunnel (or the redirect), no strict chain
 *   strict     the same + the strict chain (what `--encryption-strict` adds); with `copies` N > 1
 *              (the paired bench's direct measure) the chain also holds N - 1 copies of each of
 *              its lookups that never drop (same matches, ending in a counter), and a first rule
 *              counting every packet the chain sees: N lookups' cost, and how many packets paid it
 *
 * Every lab has the same shape (same underlay, addresses and pod CIDRs, in its own namespaces),
 * so windows of different labs compare like windows of one.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { startLabCluster, type LabCluster, type LabNode } from "../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { encryptTableScript, ENCRYPT_TABLE, type EncryptTableConfig } from "../src/encryption/strict.js";
import { nftApply } from "../src/datapath/exec.js";
import type { EncryptionStatus } from "../src/encryption/mode.js";
import { runRaw } from "../src/datapath/exec.js";
import { pidsIn, sh, TRAFFIC, type WindowTarget } from "./encryption-window.js";

export type Tunnel = "wireguard" | "ipsec" | "mtls-tunnel";
export type LabState = "plaintext" | "encrypted" | "strict";
export const TUNNELS: readonly Tunnel[] = ["wireguard", "ipsec", "mtls-tunnel"];
/** The lab's cluster CIDR (startLabCluster's default): what strict mode covers. */
const CLUSTER_CIDR = "10.200.0.0/16";

export interface ModeLab {
  readonly mode: Tunnel;
  readonly lab: LabCluster;
  /** What the windows measure: client pod -> server pod, the tunnel's processes. */
  readonly target: WindowTarget;
  /** The server pod's namespace (iperf3 -s and the ping-pong server run there). */
  readonly serverNetns: string;
  /** n1's encryption status when the lab was ready (impl, interface). */
  readonly status: EncryptionStatus;
  /** Puts the lab's datapath in `state` (both nodes); `copies`: see the top of this file. */
  set(state: LabState, copies?: number): Promise<void>;
  /** Packets the strict chain's counting rule saw (both nodes; 0 unless set with copies > 1). */
  strictPackets(): Promise<number>;
}

/** The encryption table's script, the strict chain's lookups repeated `copies` times (never dropping). */
export function strictScript(c: EncryptTableConfig, copies: number): string {
  const lines = encryptTableScript(c).split("\n");
  if (copies <= 1) return lines.join("\n");
  const start = lines.indexOf("  chain strict {");
  const drops = lines.filter((l, i) => i > start && /@strict[46] .* drop$/.test(l));
  const dummies = drops.map((l) => l.replace(/ counter log .* drop$/, " counter"));
  const at = start + 2; // after the chain's type line
  const extra = ["    counter", ...Array.from({ length: copies - 1 }, () => dummies).flat()];
  return [...lines.slice(0, at), ...extra, ...lines.slice(at)].join("\n");
}

async function applyTable(c: EncryptTableConfig & { netns: string }, copies: number): Promise<void> {
  await nftApply(strictScript(c, copies), { netns: c.netns });
}

const cidr = (ip: string): string => ip.replace(/\.\d+$/, ".0/24");
const gateway = (ip: string): string => ip.replace(/\.\d+$/, ".1");

/** Starts a lab of `mode` with its two pods and their servers; `children` collects what it spawns. */
export async function startModeLab(mode: Tunnel, prefix: string, children: ChildProcess[]): Promise<ModeLab> {
  const lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: mode });
  try {
    return await ready(mode, lab, children);
  } catch (e) {
    await lab.stop();
    throw e;
  }
}

async function ready(mode: Tunnel, lab: LabCluster, children: ChildProcess[]): Promise<ModeLab> {
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const client = await createEndpoint(n1, "client", { app: "client" });
  const server = await createEndpoint(n2, "server", { app: "server" });
  await waitRemote(n1, [server.ipv4]);
  await waitRemote(n2, [client.ipv4]);
  const spawnIn = (argv: string[]): ChildProcess => {
    const p = spawn("ip", ["netns", "exec", server.netns, ...argv], { stdio: ["ignore", "pipe", "ignore"], detached: true }); // prettier-ignore
    children.push(p);
    return p;
  };
  spawnIn(["iperf3", "-s", "-p", "5201"]);
  const rr = spawnIn([process.execPath, TRAFFIC, "--rr-server"]);
  let rrOut = "";
  rr.stdout?.on("data", (d: Buffer) => (rrOut += d.toString()));
  for (let i = 0; i < 100 && !rrOut.includes("ready"); i++) await new Promise((r) => setTimeout(r, 50));
  const st = new Map<LabNode, EncryptionStatus>();
  for (const n of [n1, n2]) st.set(n, (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus);
  const netns = [n1.netns, n2.netns];
  // The tunnel's processes: the mTLS tunnel's (its status names them), wireguard-go, or charon
  // (all its threads: /proc/<pid>/stat counts them).
  const tunnelPids =
    mode === "mtls-tunnel"
      ? [...st.values()].flatMap((s) => (s.tunnel?.pid !== undefined ? [s.tunnel.pid] : []))
      : pidsIn(netns, (c) => (mode === "wireguard" ? c === "wireguard-go" : c.startsWith("charon")));
  const sides = [
    [n1, n2, client.ipv4, server.ipv4],
    [n2, n1, server.ipv4, client.ipv4],
  ] as const;
  const set = async (state: LabState, copies = 1): Promise<void> => {
    const k = state === "strict" ? copies : 1;
    for (const [n, peer, localIp, peerIp] of sides) {
      const strict = state === "strict" ? { strictCidrs: [CLUSTER_CIDR] } : {};
      if (mode === "mtls-tunnel") {
        const tunnel = { redirect4: gateway(localIp), port: 15006, clusterCidrs: [CLUSTER_CIDR] };
        await applyTable(
          {
            netns: n.netns,
            ...(state !== "plaintext" ? { tunnel } : {}),
            ...strict,
            localCidrs: [cidr(localIp)],
            logGroup: 1,
          },
          k,
        );
        continue;
      }
      const dev = (st.get(n) as EncryptionStatus).interface;
      const via = state === "plaintext" ? ["via", peer.ip] : ["dev", dev];
      await sh(n.netns, ["ip", "route", "replace", cidr(peerIp), ...via, "proto", "211"]);
      if (mode === "ipsec") {
        // charon's kernel-libipsec routes each SA's selectors into ipsec0 through its table 220.
        await runRaw(["ip", "rule", "del", "pref", "220"], { netns: n.netns });
        if (state !== "plaintext") await sh(n.netns, ["ip", "rule", "add", "pref", "220", "table", "220"]);
      }
      await applyTable({ netns: n.netns, tunnelIf: dev, ...strict, localCidrs: [cidr(localIp)], logGroup: 1 }, k); // prettier-ignore
    }
  };
  const strictPackets = async (): Promise<number> => {
    let n = 0;
    for (const ns of netns) {
      const r = await runRaw(["nft", "list", "chain", "inet", ENCRYPT_TABLE, "strict"], { netns: ns });
      // The counting rule is the chain's first: a bare `counter`.
      const m = /\n\s*counter packets (\d+) bytes \d+\n/.exec(r.stdout);
      n += Number(m?.[1] ?? 0);
    }
    return n;
  };
  return {
    mode,
    lab,
    strictPackets,
    target: { clientNetns: client.netns, serverIp: server.ipv4, tunnelPids, nodeNetns: netns },
    serverNetns: server.netns,
    status: st.get(n1) as EncryptionStatus,
    set,
  };
}
