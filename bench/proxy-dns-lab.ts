/**
 * The proxy benchmark's DNS targets in a network namespace of their own (root), with the
 * product's datapath shape, so that each query pays what it pays in the product: the kernel's
 * DNAT to the proxy, the conntrack broker's ctnetlink lookup, the ct id in the packet mark.
 *
 *   namespace <prefix><random>, every address on its loopback:
 *     10.99.0.2  the load's source for "membrane"  --nat output: ct mark |= CT_REDIRECT_DNS,
 *                                                    natRules (compile-nat.ts): DNAT to 10.99.0.1:15053
 *     10.99.0.3  the load's source for "direct"    --not redirected--> resolver 10.99.0.53:53
 *     10.99.0.4  the load's source for "membraneAsk" --DNAT to 10.99.0.1:15054: a second proxy, whose
 *                datagrams get no ct id (no mark rule for its port), so every query asks the
 *                broker: the product's path before the cache, side by side in the same run
 *     10.99.0.1:15053  Membrane's DNS proxy (proxy-dns-node.js proxy), the real ctbroker.js
 *                      --its upstream: the original destination, 10.99.0.53:53 (never redirected:
 *                        its source is not 10.99.0.2)
 *     input: dnsIdRules (compile-nat.ts): the redirected datagrams' mark = ct id
 *     10.99.0.5  the load's source for "dnsdist" (when installed: proxy-dnsdist.ts) --nat output:
 *                DNAT to 10.99.0.6:15055, dnsdist, which forwards to 10.99.0.53:53 from 10.99.0.6:
 *                the same path as "membrane" (the load's datagrams pay conntrack's DNAT both ways,
 *                the proxy's upstream ones a plain conntrack entry), but no ct id and no broker
 *   load.js, the resolver and the proxy run in it (`ip netns exec`, IPC over the inherited channel).
 *
 * Both targets send to the same address and port (10.99.0.53:53) from the same generator; only
 * the source address differs. Two loads each: a socket per channel, reused (the proxy's cache of
 * conntrack answers hits after each channel's first query), and a fresh socket per query (a new
 * conntrack entry each time: the miss path). Nothing is loaded into the root namespace's
 * nftables; the namespace goes (with its table) in close().
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { CT_REDIRECT_DNS } from "../src/abi/marks.js";
import { DNS_ID_BASE, dnsIdRules, NAT_OUT_BASE, natRules } from "../src/datapath/compile-nat.js";
import { PROXY_NODE_FLAGS } from "../src/proxy/runtime/node-flags.js";
import type { LoadResult, LoadSpec } from "./load.js";
import { dnsperfLoad, type LoadRunner } from "./load-dnsperf.js";
import { startDnsdist, type Dnsdist, type DnsdistBinary } from "./proxy-dnsdist.js";
import { actAsAgent, childPids, Rpc, stopChild } from "./proxy-procs.js";

const PROXY = "10.99.0.1";
const CLIENT = "10.99.0.2";
const DIRECT = "10.99.0.3";
const ASK = "10.99.0.4";
const ASK_PORT = 15054;
const RESOLVER = "10.99.0.53";
const PROXY_PORT = 15053;
const DNSDIST_CLIENT = "10.99.0.5";
const DNSDIST = "10.99.0.6";
/** Above 1024: dnsdist needs no privilege to bind it (the load still sends to port 53: the DNAT). */
const DNSDIST_PORT = 15055;

/** A DNS target of the lab (proxy.ts's Target): how the load reaches it, whose CPU is the proxy's and the resolver's. */
export interface LabTarget {
  readonly name: string;
  readonly kind: "dns";
  readonly port: number;
  readonly dns: NonNullable<LoadSpec["dns"]>;
  readonly pids: () => number[];
  readonly load: LoadRunner;
  readonly upstreamPids: () => number[];
}

export interface DnsLab {
  readonly netns: string;
  /** The load generator inside the namespace. */
  readonly load: Rpc<LoadSpec, LoadResult>;
  readonly resolverPid: number;
  /** The same targets twice: sockets reused ("reused") and a new socket per query ("fresh"). */
  readonly reused: readonly LabTarget[];
  readonly fresh: readonly LabTarget[];
  /** The reference proxy, when its binary was given. */
  readonly dnsdist?: Dnsdist;
  close(): Promise<void>;
}

function sh(argv: string[], input?: string): void {
  const r = spawnSync(argv[0] as string, argv.slice(1), { input: input ?? "", encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/** Starts dist/bench/<script> in `netns` with an IPC channel; resolves with its first message. */
async function spawnReady<T>(
  netns: string,
  script: string,
  args: string[],
  execArgv: readonly string[] = [],
): Promise<{ child: ChildProcess; ready: T }> {
  const path = fileURLToPath(new URL(script, import.meta.url));
  // `ip netns exec` execs node in place (no fork): the child's pid is node's; the channel's fd is inherited.
  const child = spawn("ip", ["netns", "exec", netns, process.execPath, ...execArgv, path, ...args], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const ready = await new Promise<T>((res, rej) => {
    child.once("message", (m) => res(m as T));
    child.once("exit", (code) =>
      rej(new Error(`Cannot start ${script} in ${netns}: it exited with code ${code}`)),
    );
  });
  return { child, ready };
}

function table(netns: string, withDnsdist: boolean): string {
  const proxy = { ipv4: PROXY, l7Port: 15001, dnsPort: PROXY_PORT, gid: 4242 };
  return [
    `table inet ${netns} {`,
    `  chain nat_out { ${NAT_OUT_BASE}`,
    `    ip saddr ${CLIENT} udp dport 53 ct mark set ct mark or ${CT_REDIRECT_DNS}`,
    // The second proxy's load: DNATed to its port alone, before the rules of the first.
    `    ip saddr ${ASK} udp dport 53 ct mark set ct mark or ${CT_REDIRECT_DNS} dnat ip to ${PROXY}:${ASK_PORT}`,
    // dnsdist's load: a plain DNAT (no ct mark: not Membrane's redirect, no ct id).
    ...(withDnsdist
      ? [`    ip saddr ${DNSDIST_CLIENT} udp dport 53 dnat ip to ${DNSDIST}:${DNSDIST_PORT}`]
      : []),
    ...natRules(proxy).map((r) => `    ${r}`),
    "  }",
    `  chain dns_id { ${DNS_ID_BASE}`,
    ...dnsIdRules(proxy).map((r) => `    ${r}`),
    "  }",
    "}",
  ].join("\n");
}

/**
 * Builds the namespace and starts the resolver, the proxy and a load generator in it; dnsdist too
 * when its binary is given (proxy-dnsdist.ts findDnsdist). With `dnsperf` (its binary), the targets'
 * load is dnsperf's (load-dnsperf.ts) instead of load.ts's, and there are no "fresh" targets.
 */
export async function startDnsLab(
  prefix: string,
  opts: { readonly dnsdist?: DnsdistBinary; readonly dnsperf?: string } = {},
): Promise<DnsLab> {
  const dnsdistBinary = opts.dnsdist;
  const netns = `${prefix}${randomBytes(3).toString("hex")}`;
  sh(["ip", "netns", "add", netns]);
  const children: ChildProcess[] = [];
  let dnsdist: Dnsdist | undefined;
  const dnsperf = opts.dnsperf !== undefined ? dnsperfLoad(opts.dnsperf, netns) : undefined;
  const close = async (): Promise<void> => {
    dnsperf?.close();
    await dnsdist?.stop();
    for (const c of children.reverse()) await stopChild(c);
    spawnSync("ip", ["netns", "del", netns]);
  };
  try {
    const addresses = [
      PROXY,
      CLIENT,
      DIRECT,
      ASK,
      RESOLVER,
      ...(dnsdistBinary ? [DNSDIST_CLIENT, DNSDIST] : []),
    ];
    for (const a of addresses) sh(["ip", "-n", netns, "addr", "add", `${a}/32`, "dev", "lo"]);
    sh(["ip", "-n", netns, "link", "set", "lo", "up"]);
    sh(["ip", "netns", "exec", netns, "nft", "-f", "-"], table(netns, dnsdistBinary !== undefined));
    const resolver = await spawnReady<{ port: number }>(netns, "./proxy-dns-node.js", ["resolver", RESOLVER]);
    children.push(resolver.child);
    // The proxy under test, and the same proxy on a port the mark rule leaves out (every query asks).
    const startProxy = async (port: number): Promise<ChildProcess> => {
      const p = await spawnReady<{ port: number }>(netns, "./proxy-dns-node.js", ["proxy", PROXY, String(port)], PROXY_NODE_FLAGS); // prettier-ignore
      children.push(p.child);
      actAsAgent(p.child);
      return p.child;
    };
    const proxy = { child: await startProxy(PROXY_PORT) };
    const ask = { child: await startProxy(ASK_PORT) };
    dnsdist = dnsdistBinary
      ? await startDnsdist({
          binary: dnsdistBinary,
          netns,
          config: {
            listen: { host: DNSDIST, port: DNSDIST_PORT },
            upstream: { host: RESOLVER, port: 53 },
            source: DNSDIST,
            client: DNSDIST_CLIENT,
          },
        })
      : undefined;
    const load = await spawnReady<unknown>(netns, "./load.js", []);
    children.push(load.child);
    // A proxy's CPU and its broker's.
    const pids = (c: ChildProcess) => (): number[] => [c.pid ?? 0, ...childPids(c.pid ?? 0)];
    const ref = (d: Dnsdist) => (): number[] => [d.pid];
    const rpc = new Rpc<LoadSpec, LoadResult>(load.child);
    const at = { kind: "dns", port: 53, load: dnsperf ?? rpc, upstreamPids: () => [resolver.child.pid ?? 0] } as const; // prettier-ignore
    const targets = (fresh: boolean): LabTarget[] => [
      { ...at, name: "direct", dns: { host: RESOLVER, bind: DIRECT, fresh }, pids: () => [] },
      { ...at, name: "membrane", dns: { host: RESOLVER, bind: CLIENT, fresh }, pids: pids(proxy.child) },
      { ...at, name: "membraneAsk", dns: { host: RESOLVER, bind: ASK, fresh }, pids: pids(ask.child) },
      ...(dnsdist ? [{ ...at, name: "dnsdist", dns: { host: RESOLVER, bind: DNSDIST_CLIENT, fresh }, pids: ref(dnsdist) }] : []), // prettier-ignore
    ];
    return {
      netns,
      load: rpc,
      resolverPid: resolver.child.pid ?? 0,
      reused: targets(false),
      // dnsperf keeps its sockets: no new socket per query.
      fresh: dnsperf ? [] : targets(true),
      ...(dnsdist ? { dnsdist } : {}),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
