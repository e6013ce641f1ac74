/**
 * Reading a node's kernel back for the cluster benchmark: which identity the
 * node's exact-address ipcache map (`ipcache4_host`, a hash map address -> mark) gives to
 * addresses, with one `nft get element` in the node namespace.
 */
import { runRaw } from "../src/datapath/exec.js";

/**
 * ip -> identity (the mark) for each of `ips` the map holds; undefined when any is missing
 * (`nft get element` answers all or nothing).
 */
export async function ipcacheOf(
  netns: string,
  table: string,
  ips: readonly string[],
): Promise<Map<string, number> | undefined> {
  const r = await runRaw(["nft", "get", "element", "inet", table, "ipcache4_host", `{ ${ips.join(", ")} }`], {
    netns,
  });
  if (r.status !== 0) return undefined;
  const out = new Map<string, number>();
  // "10.200.0.7 : 0x000003e8" or a range "10.200.0.7-10.200.0.9 : 0x000003e8"
  const re = /(\d+\.\d+\.\d+\.\d+)(?:-(\d+\.\d+\.\d+\.\d+))? : 0x([0-9a-f]+)/g;
  const num = (ip: string): number => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const ranges: [number, number, number][] = [];
  for (let m = re.exec(r.stdout); m; m = re.exec(r.stdout)) {
    const lo = num(m[1] as string);
    ranges.push([lo, m[2] ? num(m[2]) : lo, parseInt(m[3] as string, 16)]);
  }
  for (const ip of ips) {
    const v = num(ip);
    const hit = ranges.find(([lo, hi]) => v >= lo && v <= hi);
    if (hit) out.set(ip, hit[2]);
  }
  return out;
}

/** Polls until every ip of `ips` has identity `want(ip)` in the node's kernel (safety net `capMs`). */
export async function untilKernel(
  netns: string,
  table: string,
  ips: readonly string[],
  want: (ip: string, id: number) => boolean,
  capMs: number,
  everyMs = 50,
): Promise<boolean> {
  const deadline = performance.now() + capMs;
  for (;;) {
    const m = await ipcacheOf(netns, table, ips);
    if (m && ips.every((ip) => m.has(ip) && want(ip, m.get(ip) as number))) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
