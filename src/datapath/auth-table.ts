/**
 * The kernel side of mutual authentication that the policy table does not hold: the table of
 * authenticated pairs (its own, `<table>_auth`, so that the Reconciler never touches entries
 * written here and they outlive the agent), the guard of the handshake port, and the NFQUEUE rule.
 *
 *   forward/input -5   <table>_auth check_*: new, CT_AUTH_NEEDED, (src . dst . saddr . daddr) in @pairs4/6 -> need cleared
 *   forward/input 0    iptables filter MEMBRANE-AUTH: new and still needed -> NFQUEUE AUTH_QUEUE_NUM
 *   forward/input 10   <table> auth_gate_* (compile-auth.ts): still needed, no PKT_AUTH_OK -> drop 189
 *   input -6           <table>_auth guard_in (cluster): handshake port from a non-node address -> drop;
 *                      new handshake connections over the rate bound -> drop
 *
 * The queue rule is an xtables target: nft here has no `queue` statement (CONFIG_NFT_QUEUE is
 * off, kernel-notes.md), but the queue itself is built in and iptables-nft reaches it through
 * nft_compat. No --queue-bypass: with no reader the kernel drops.
 * Pair keys: source identity . destination identity . source node's pod CIDR . destination
 * node's pod CIDR (an interval set: one element per CIDR pair of a family), so that a pair
 * authenticated with node B's agent never lets the same identities through to or from node C.
 * Each entry has a timeout no later than the earlier expiry of the two SVIDs.
 * Pair writes go through the agent's own nfnetlink socket in the node namespace (auth-wire.ts,
 * nfnl/socket.ts: no process, done within the call), and with `nft` when the addon is not built,
 * the socket cannot open or the kernel refuses the batch (nothing half written: a batch is whole).
 */
import { CT_AUTH_NEEDED, CT_KEEP_ON_AUTH, AUTH_QUEUE_NUM, IDENTITY_MASK } from "../abi/marks.js";
import { MembraneError } from "../errors.js";
import { parsePrefix, prefixString } from "../labels/cidr.js";
import { nftApply, runRaw } from "./exec.js";
import { frameBatch } from "../abi/nft-object-wire.js";
import { authWriteMessages, type AuthElementKey, type AuthWrite } from "./auth-wire.js";
import { nfnlSocketAvailable, NfnlSocket } from "./nfnl/socket.js";
import { hex } from "./policy-groups.js";

export const AUTH_CHAIN = "MEMBRANE-AUTH";

/** One authenticated pair as the kernel keys it: identities and the pod CIDRs of their nodes. */
export interface AuthPairKey {
  readonly src: number;
  readonly dst: number;
  /** Pod CIDRs of the source's node and of the destination's node (canonical prefixes). */
  readonly srcNets: readonly string[];
  readonly dstNets: readonly string[];
}

/** One kernel element: a single CIDR per side. */
export interface AuthPairEntry {
  readonly src: number;
  readonly dst: number;
  readonly srcNet: string;
  readonly dstNet: string;
  /** Seconds left, as the kernel counts. */
  readonly expiresSeconds: number;
}

const M = hex(IDENTITY_MASK);
const checkRules = (): string[] =>
  (["ip", "ip6"] as const).map(
    (f) =>
      `ct state new ct mark & ${hex(CT_AUTH_NEEDED)} != 0 meta mark & ${M} . ct mark & ${M} . ${f} saddr . ${f} daddr @pairs${f === "ip" ? 4 : 6} ` +
      `ct mark set ct mark and ${hex(CT_KEEP_ON_AUTH)}`,
  );

/** Connections per second (new, any source) the handshake port accepts before the kernel drops. */
export const HANDSHAKE_RATE = 200;

function checkId(n: number, what: string): void {
  if (!Number.isInteger(n) || n <= 0 || n > IDENTITY_MASK)
    throw new MembraneError(
      "AUTH_SETUP_FAILED",
      `Cannot write an auth pair: ${what} ${n} is not an identity`,
    );
}

function canonNet(n: string, what: string): { family: 4 | 6; text: string } {
  const p = parsePrefix(n, true);
  if (!p) throw new MembraneError("AUTH_SETUP_FAILED", `Cannot write an auth pair: ${what} ${JSON.stringify(n)} is not a prefix`); // prettier-ignore
  return { family: p.family, text: prefixString(p) };
}

/** One kernel element: its set, its nft text, a key for maps, its parts (auth-wire.ts). */
export interface PairElement {
  readonly set: "pairs4" | "pairs6";
  readonly elem: string;
  readonly key: string;
  readonly parts: AuthElementKey;
}

/** The kernel elements of pairs: every (source CIDR, destination CIDR) of one family. */
export function pairElements(pairs: readonly AuthPairKey[]): PairElement[] {
  const out: PairElement[] = [];
  for (const p of pairs) {
    checkId(p.src, "source");
    checkId(p.dst, "destination");
    for (const sn of p.srcNets.map((n) => canonNet(n, "source network")))
      for (const dn of p.dstNets.map((n) => canonNet(n, "destination network")))
        if (sn.family === dn.family)
          out.push({
            set: sn.family === 4 ? "pairs4" : "pairs6",
            elem: `${p.src} . ${p.dst} . ${sn.text} . ${dn.text}`,
            key: `${p.src}.${p.dst}.${sn.text}.${dn.text}`,
            parts: { src: p.src, dst: p.dst, srcNet: sn.text, dstNet: dn.text },
          });
  }
  return out;
}

export class AuthTable {
  readonly name: string;
  /**
   * Writes of pairs, applied one after the other in the order they were asked for: a handshake's
   * add still under way must not land after a revocation's remove of the same pair (the revoked
   * pair would come back into the kernel, unknown to the agent).
   */
  private writes: Promise<void> = Promise.resolve();
  /**
   * Transactions of pair writes run so far: through the agent's own nfnetlink socket, through
   * `nft`, and socket batches the kernel refused (then written with `nft`); the last refusal.
   */
  readonly stats = { transactions: 0, socket: 0, nft: 0, fallbacks: 0, lastFallback: "" };
  /** The transaction not started yet, which new writes join. */
  private batch: { writes: AuthWrite[]; done: Promise<void> } | undefined;
  /** The agent's own socket in the node namespace (auth-wire.ts), when the addon is built. */
  private sock: NfnlSocket | undefined;
  /**
   * How pair writes reach the kernel: "socket" (the default when the addon is built; `nft` when a
   * batch is refused or the socket cannot open) or "nft" (a process per transaction: the old path,
   * kept for comparison, bench/auth.ts).
   */
  writer: "socket" | "nft";
  constructor(
    table: string,
    private readonly netns: string | undefined,
  ) {
    this.name = `${table}_auth`;
    if (nfnlSocketAvailable()) this.sock = new NfnlSocket(netns);
    this.writer = this.sock ? "socket" : "nft";
  }

  /** Closes the socket (writes after this go through `nft`). */
  close(): void {
    this.sock?.close();
    this.sock = undefined;
  }

  private opts(): { netns?: string } {
    return this.netns === undefined ? {} : { netns: this.netns };
  }

  /** Creates the table, sets and chains (entries kept: a restarted agent adopts them), and the queue rules. */
  async install(): Promise<void> {
    const t = `inet ${this.name}`;
    await nftApply(
      [
        `add table ${t}`,
        `add set ${t} pairs4 { type mark . mark . ipv4_addr . ipv4_addr; flags interval, timeout; }`,
        `add set ${t} pairs6 { type mark . mark . ipv6_addr . ipv6_addr; flags interval, timeout; }`,
        `add chain ${t} check_fwd { type filter hook forward priority -5; policy accept; }`,
        `add chain ${t} check_in { type filter hook input priority -5; policy accept; }`,
        `flush chain ${t} check_fwd`,
        `flush chain ${t} check_in`,
        ...checkRules().flatMap((r) => [`add rule ${t} check_fwd ${r}`, `add rule ${t} check_in ${r}`]),
      ].join("\n") + "\n",
      this.opts(),
    );
    // The set of a version that keyed pairs by identities only (no node): its entries no longer count.
    await runRaw(this.argv(["nft", "delete", "set", "inet", this.name, "pairs"]), { timeoutMs: 30_000 }).catch(() => undefined); // prettier-ignore
    for (const bin of ["iptables", "ip6tables"]) await this.queueRules(bin);
  }

  /**
   * The handshake port's guard (cluster mode): only the addresses of registered nodes reach
   * `port`, and new connections to it beyond HANDSHAKE_RATE per second drop in the kernel.
   * Replaces the peer addresses atomically.
   */
  async guard(port: number, peers: readonly string[]): Promise<void> {
    const t = `inet ${this.name}`;
    const v4 = peers.filter((a) => !a.includes(":"));
    const v6 = peers.filter((a) => a.includes(":"));
    await nftApply(
      [
        `add set ${t} peers4 { type ipv4_addr; }`,
        `add set ${t} peers6 { type ipv6_addr; }`,
        `add chain ${t} guard_in { type filter hook input priority -6; policy accept; }`,
        `flush set ${t} peers4`,
        `flush set ${t} peers6`,
        ...(v4.length ? [`add element ${t} peers4 { ${v4.join(", ")} }`] : []),
        ...(v6.length ? [`add element ${t} peers6 { ${v6.join(", ")} }`] : []),
        `flush chain ${t} guard_in`,
        `add rule ${t} guard_in tcp dport ${port} ip saddr != @peers4 counter drop`,
        `add rule ${t} guard_in tcp dport ${port} ip6 saddr != @peers6 counter drop`,
        `add rule ${t} guard_in tcp dport ${port} ct state new limit rate over ${HANDSHAKE_RATE}/second burst ${HANDSHAKE_RATE} packets counter drop`,
      ].join("\n") + "\n",
      this.opts(),
    );
  }

  /** Packets the guard dropped so far (strangers, over the rate): from its counters. */
  async guardDrops(): Promise<number> {
    const r = await runRaw(this.argv(["nft", "-j", "list", "chain", "inet", this.name, "guard_in"]), { timeoutMs: 30_000 }); // prettier-ignore
    if (r.status !== 0) return 0;
    return [...r.stdout.matchAll(/"packets":\s*(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  }

  private argv(a: string[]): string[] {
    return this.netns === undefined ? a : ["ip", "netns", "exec", this.netns, ...a];
  }

  private async queueRules(bin: string): Promise<void> {
    const ipt = async (args: string[], mayFail = false): Promise<boolean> => {
      const r = await runRaw(this.argv([bin, "-w", ...args]), { timeoutMs: 30_000 }).catch((e: unknown) => ({ status: -1, stdout: "", stderr: String(e) })); // prettier-ignore
      if (r.status !== 0 && !mayFail)
        throw new MembraneError("AUTH_SETUP_FAILED", `Cannot install the authentication queue rule: ${bin} ${args.join(" ")}: ${r.stderr.trim()}`, { hint: "Install iptables (apt-get install iptables): the queue rule needs iptables-nft." }); // prettier-ignore
      return r.status === 0;
    };
    await ipt(["-N", AUTH_CHAIN], true);
    await ipt(["-F", AUTH_CHAIN]);
    await ipt(["-A", AUTH_CHAIN, "-m", "conntrack", "--ctstate", "NEW", "-m", "connmark", "--mark", `${hex(CT_AUTH_NEEDED)}/${hex(CT_AUTH_NEEDED)}`, "-j", "NFQUEUE", "--queue-num", String(AUTH_QUEUE_NUM)]); // prettier-ignore
    for (const hook of ["FORWARD", "INPUT"])
      if (!(await ipt(["-C", hook, "-j", AUTH_CHAIN], true))) await ipt(["-I", hook, "1", "-j", AUTH_CHAIN]);
  }

  /** Adds (or refreshes) the pairs for `seconds`, in one transaction. */
  async add(pairs: readonly AuthPairKey[], seconds: number): Promise<void> {
    const els = pairElements(pairs);
    if (els.length === 0) return;
    await this.inOrder({ kind: "add", elements: els.map((e) => ({ set: e.set, key: e.parts })), seconds: Math.max(1, Math.floor(seconds)) }); // prettier-ignore
  }

  /** Removes pairs (missing ones are no error), in one transaction. */
  async remove(pairs: readonly AuthPairKey[]): Promise<void> {
    const els = pairElements(pairs);
    if (els.length === 0) return;
    await this.inOrder({ kind: "remove", elements: els.map((e) => ({ set: e.set, key: e.parts })) });
  }

  /**
   * Writes that arrive while another runs join the next transaction (in call order). No timer:
   * the first write starts at once (a microtask), and through the socket it is done in that turn.
   */
  private inOrder(w: AuthWrite): Promise<void> {
    const open = this.batch;
    if (open) {
      open.writes.push(w);
      return open.done;
    }
    const b: { writes: AuthWrite[]; done: Promise<void> } = { writes: [w], done: Promise.resolve() };
    const run = (): Promise<void> => {
      if (this.batch === b) this.batch = undefined; // later writes start the next batch
      this.stats.transactions++;
      return this.apply(b.writes);
    };
    this.batch = b;
    b.done = this.writes.then(run, run);
    this.writes = b.done.catch(() => undefined);
    return b.done;
  }

  /** One transaction: through the socket when it can, else (or when the kernel refuses it) with nft. */
  private async apply(writes: readonly AuthWrite[]): Promise<void> {
    if (this.writer === "socket" && this.sock?.open()) {
      try {
        this.sock.send(frameBatch(authWriteMessages(this.name, writes), 0).bytes);
        this.stats.socket++;
        return;
      } catch (e) {
        // The kernel applies a batch whole or not at all: nft writes the same from scratch.
        this.stats.fallbacks++;
        this.stats.lastFallback = (e as Error).message;
      }
    }
    this.stats.nft++;
    await nftApply(nftLines(this.name, writes).join("\n") + "\n", this.opts());
  }

  /** The elements the kernel holds now. */
  async list(): Promise<AuthPairEntry[]> {
    const out: AuthPairEntry[] = [];
    for (const set of ["pairs4", "pairs6"]) {
      const r = await runRaw(this.argv(["nft", "-j", "list", "set", "inet", this.name, set]), { timeoutMs: 30_000 }); // prettier-ignore
      if (r.status !== 0) continue;
      const doc = JSON.parse(r.stdout) as { nftables?: { set?: { elem?: unknown[] } }[] };
      for (const item of doc.nftables ?? []) {
        for (const e of item.set?.elem ?? []) {
          const el = (e as { elem?: { val?: { concat?: unknown[] }; expires?: number } }).elem;
          const [src, dst, sn, dn] = el?.val?.concat ?? [];
          const net = (x: unknown): string | undefined => {
            if (typeof x === "string") return x.includes("/") ? x : `${x}/${x.includes(":") ? 128 : 32}`;
            const p = (x as { prefix?: { addr?: unknown; len?: unknown } } | undefined)?.prefix;
            return typeof p?.addr === "string" && typeof p.len === "number"
              ? `${p.addr}/${p.len}`
              : undefined;
          };
          const srcNet = net(sn);
          const dstNet = net(dn);
          if (typeof src === "number" && typeof dst === "number" && srcNet && dstNet)
            out.push({ src, dst, srcNet, dstNet, expiresSeconds: typeof el?.expires === "number" ? el.expires : 0 }); // prettier-ignore
        }
      }
    }
    return out;
  }
}

/** The same writes as nft text (delete-then-add: `add` keeps an existing element's old timeout). */
function nftLines(table: string, writes: readonly AuthWrite[]): string[] {
  const t = `inet ${table}`;
  const text = (k: AuthElementKey): string => `${k.src} . ${k.dst} . ${k.srcNet} . ${k.dstNet}`;
  return writes.flatMap((w) =>
    w.elements.flatMap((e) => [
      `add element ${t} ${e.set} { ${text(e.key)} timeout 1s }`,
      `delete element ${t} ${e.set} { ${text(e.key)} }`,
      ...(w.kind === "add"
        ? [`add element ${t} ${e.set} { ${text(e.key)} timeout ${w.seconds ?? 1}s }`]
        : []),
    ]),
  );
}
