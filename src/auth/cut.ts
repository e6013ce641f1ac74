/**
 * Cutting the established connections of pairs that are no longer authenticated: their endpoint
 * sockets on this node are destroyed (`ss -K`: the owner gets ECONNABORTED, the peer a RST) and
 * their conntrack entries deleted (ctnetlink, datapath/conntrack-flush.ts), so nothing more of
 * them passes as established: a next packet is a new connection, judged (and authenticated)
 * again.
 *
 *   pairs [{srcIps, dstIps}] --ConntrackChild dump (only entries of those addresses)-->
 *     entries with original source in srcIps and destination in dstIps
 *     --ss -K in the local endpoint's namespace (TCP)--> --ctnetlink delete-->
 */
import { ConntrackChild } from "../datapath/conntrack-flush.js";
import { runRaw } from "../datapath/exec.js";
import { parseAddr } from "../labels/cidr.js";

export interface CutPair {
  readonly srcIps: ReadonlySet<string>;
  readonly dstIps: ReadonlySet<string>;
}

export interface CutResult {
  readonly connections: number;
  readonly socketsDestroyed: number;
  readonly entriesDeleted: number;
  readonly problems: string[];
}

const canon = (a: string): string => {
  const p = parseAddr(a);
  return p ? `${p.family}:${p.value.toString(16)}` : a;
};
const hostPort = (a: string, port: number): string => (a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`);

export async function cutConnections(
  pairs: readonly CutPair[],
  d: { nodeNetns?: string; netnsOfIp: (ip: string) => string | undefined },
): Promise<CutResult> {
  const sets = pairs.map((p) => ({
    s: new Set([...p.srcIps].map(canon)),
    d: new Set([...p.dstIps].map(canon)),
  }));
  const addresses = [...new Set(pairs.flatMap((p) => [...p.srcIps, ...p.dstIps]))];
  if (addresses.length === 0) return { connections: 0, socketsDestroyed: 0, entriesDeleted: 0, problems: [] };
  const ct = ConntrackChild.start(d.nodeNetns !== undefined ? { nodeNetns: d.nodeNetns } : {}, addresses);
  try {
    const dump = await ct.dump();
    const hit = dump.entries.filter((e) => sets.some((x) => x.s.has(canon(e.src)) && x.d.has(canon(e.dst))));
    let destroyed = 0;
    const problems: string[] = [];
    for (const e of hit.filter((x) => x.proto === 6)) {
      for (const [local, lp, peer, pp] of [
        [e.src, e.srcPort, e.dst, e.dstPort],
        [e.dst, e.dstPort, e.src, e.srcPort],
      ] as const) {
        const netns = d.netnsOfIp(local);
        if (netns === undefined) continue;
        const r = await runRaw(["ss", "-K", "-H", "-t", "-n", `( src ${hostPort(local, lp)} and dst ${hostPort(peer, pp)} )`], { netns, timeoutMs: 10_000 }); // prettier-ignore
        if (r.status !== 0) problems.push(`ss -K in ${netns}: ${r.stderr.trim().slice(0, 200)}`);
        else destroyed += r.stdout.split("\n").filter((l) => l.trim() !== "").length;
      }
    }
    const del = await ct.delete(hit);
    return { connections: hit.length, socketsDestroyed: destroyed, entriesDeleted: del.deleted, problems: [...problems, ...del.failed] }; // prettier-ignore
  } finally {
    ct.close();
  }
}
