/**
 * What an endpoint's namespaces hold, read in one `ip -j -batch` process per
 * namespace, and the `ip -batch` lines that bring them to what is wanted.
 * Pure apart from readNetnsState(); a line is emitted only for what differs,
 * so an endpoint that is already as wanted costs zero kernel operations.
 */
import { runRaw } from "./exec.js";
import { inNetns, isNetnsName } from "./rtnl.js";

export interface LinkState {
  readonly up: boolean;
  /** "10.200.0.5/32", "fe80::1/64", ... */
  readonly addrs: ReadonlySet<string>;
}
export interface NetnsState {
  readonly links: ReadonlyMap<string, LinkState>;
  /** "dst dev [via gw]" keys, both families: "default via 10.200.0.1 dev eth0", "10.200.0.5 dev h1"; "blackhole 10.200.0.0/24". */
  readonly routes: ReadonlySet<string>;
}
export const EMPTY_NETNS: NetnsState = { links: new Map(), routes: new Set() };

interface JsonLink {
  ifname?: string;
  flags?: string[];
  addr_info?: { local?: string; prefixlen?: number }[];
}
interface JsonRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  type?: string;
}

export function routeKey(dst: string, dev: string, gateway?: string): string {
  return gateway === undefined ? `${dst} dev ${dev}` : `${dst} via ${gateway} dev ${dev}`;
}

/**
 * Parses the three JSON lines of `addr show`, `route show`, `route show table all root ::/0 type unicast`;
 * read with `dev X`, ip leaves the device out of each route: `dev` puts it back.
 */
export function parseNetnsState(stdout: string, dev?: string): NetnsState {
  const [links, r4, r6] = stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as unknown[]);
  const out = new Map<string, LinkState>();
  for (const l of (links ?? []) as JsonLink[]) {
    if (l.ifname === undefined) continue;
    out.set(l.ifname, {
      up: (l.flags ?? []).includes("UP"),
      addrs: new Set((l.addr_info ?? []).map((a) => `${a.local ?? ""}/${a.prefixlen ?? ""}`)),
    });
  }
  const routes = new Set<string>();
  for (const r of [...((r4 ?? []) as JsonRoute[]), ...((r6 ?? []) as JsonRoute[])]) {
    const rdev = r.dev ?? dev;
    // Before the device: an IPv6 blackhole is shown with "dev lo".
    if (r.type === "blackhole" && r.dst !== undefined) routes.add(`blackhole ${r.dst}`);
    else if (r.dst !== undefined && rdev !== undefined) routes.add(routeKey(r.dst, rdev, r.gateway));
  }
  return { links: out, routes };
}

/** How a background reader reads (the agent's checks after a restart). */
export interface BackgroundRead {
  /** At nice 19 (its children inherit it): behind the agent's changes for the CPU. */
  readonly background?: boolean;
  /**
   * Awaited between the process's end and the parse of its output: the agent passes "until
   * its work queue is quiet" (bounded), so that a change arriving while the process ran does
   * not wait for the parse (the node's state at 1,000 endpoints is ~600 KB of JSON).
   */
  readonly beforeParse?: () => Promise<void>;
}

/** The node's own basics only (verifyNode): lo's addresses and the blackholes, whatever the node holds. */
export const NODE_BASICS_QUERY =
  "addr show dev lo\nroute show type blackhole\nroute show table all root ::/0 type blackhole\n";

/**
 * Reads links, addresses and routes of a namespace (absent = the current one)
 * in one process; with `dev`, only that device's (a node holding 1,000
 * endpoints is not read whole for one of them). A missing device reads as empty.
 * `opts.query`: other `ip -j -batch` lines of the same three-line shape (NODE_BASICS_QUERY).
 */
export async function readNetnsState(
  netns: string | undefined,
  dev?: string,
  opts: BackgroundRead & { readonly query?: string } = {},
): Promise<NetnsState> {
  const d = dev === undefined ? "" : ` dev ${dev}`;
  const nice = opts.background === true ? ["nice", "-n", "19"] : [];
  const r = await runRaw([...nice, ...inNetns(netns), "ip", "-j", "-batch", "-"], {
    stdin: opts.query ?? `addr show${d}\nroute show${d}\nroute show table all root ::/0 type unicast${d}\n`,
  });
  if (r.status !== 0) return EMPTY_NETNS;
  await opts.beforeParse?.();
  return parseNetnsState(r.stdout, dev);
}

/** What readNetnsState asks `ip -j -batch` (three JSON lines). */
const STATE_QUERY = "addr show\nroute show\nroute show table all root ::/0 type unicast\n";

/**
 * readNetnsState for many namespaces from ONE process spawned by Node: an
 * `sh` that enters each in turn (`nsenter ... ip -j -batch`), its output cut
 * by marker lines. A spawn from the agent's large heap blocks its event loop
 * for 10-17 ms (fork), so 1,000 reads one by one stalled every request for
 * seconds after a restart; the shell's forks cost the agent nothing. A
 * namespace that cannot be read reads as empty, as with readNetnsState.
 */
export async function readNetnsStates(
  netnses: readonly string[],
  opts: BackgroundRead = {},
): Promise<Map<string, NetnsState>> {
  const bad = netnses.find((n) => !isNetnsName(n));
  if (bad !== undefined) throw new Error(`readNetnsStates: ${JSON.stringify(bad)} is not a namespace name`);
  const script = netnses
    .map(
      (n) =>
        `echo '@@ns ${n}'\n${inNetns(n).join(" ")} ip -j -batch - <<'MEMBRANE_EOF'\n${STATE_QUERY}MEMBRANE_EOF\necho "@@rc $?"\n`,
    )
    .join("");
  // background: at nice 19 (its children inherit it), behind the agent's changes for the CPU.
  const argv = [...(opts.background === true ? ["nice", "-n", "19"] : []), "sh", "-s"];
  const r = await runRaw(argv, { stdin: script, timeoutMs: 30_000 + 200 * netnses.length });
  await opts.beforeParse?.();
  const out = new Map<string, NetnsState>();
  let current: string | undefined;
  let body: string[] = [];
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("@@ns ")) {
      current = line.slice(5);
      body = [];
    } else if (line.startsWith("@@rc ") && current !== undefined) {
      out.set(current, line === "@@rc 0" ? parseNetnsState(body.join("\n")) : EMPTY_NETNS);
      current = undefined;
    } else if (current !== undefined) body.push(line);
  }
  for (const n of netnses) if (!out.has(n)) out.set(n, EMPTY_NETNS);
  return out;
}

/**
 * One change a plan makes, structured (rtnl-ops.ts applies it over
 * rtnetlink); `lines` holds the same change as an `ip -batch` line.
 */
export type LinkOp =
  | { readonly op: "up"; readonly ifname: string }
  | { readonly op: "addr"; readonly ifname: string; readonly cidr: string; readonly nodad: boolean }
  | {
      readonly op: "route";
      readonly dst: string;
      readonly dev: string;
      readonly gateway?: string;
      readonly scopeLink?: boolean;
    };

/** Collects the changes for one namespace, as `ip -batch` lines and as rtnetlink ops. */
export class NetnsPlan {
  readonly lines: string[] = [];
  readonly ops: LinkOp[] = [];
  constructor(private readonly state: NetnsState) {}
  up(ifname: string): void {
    if (this.state.links.get(ifname)?.up === true) return;
    this.lines.push(`link set ${ifname} up`);
    this.ops.push({ op: "up", ifname });
  }
  addr(ifname: string, cidr: string, nodad: boolean): void {
    if (this.state.links.get(ifname)?.addrs.has(cidr) === true) return;
    this.lines.push(`addr replace ${cidr} dev ${ifname}${nodad ? " nodad" : ""}`);
    this.ops.push({ op: "addr", ifname, cidr, nodad });
  }
  route(dst: string, dev: string, opts: { gateway?: string; scopeLink?: boolean } = {}): void {
    if (this.state.routes.has(routeKey(dst, dev, opts.gateway))) return;
    const via = opts.gateway === undefined ? "" : ` via ${opts.gateway}`;
    this.lines.push(`route replace ${dst}${via} dev ${dev}${opts.scopeLink ? " scope link" : ""}`);
    this.ops.push({ op: "route", dst, dev, ...opts });
  }
}
