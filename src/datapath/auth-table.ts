/**
 * The kernel side of mutual authentication that the policy table does not hold: the table of
 * authenticated pairs (its own, `<table>_auth`, so that the Reconciler never touches entries
 * written here and they outlive the agent) and the NFQUEUE rule.
 *
 *   forward/input -5   <table>_auth check_*: new, CT_AUTH_NEEDED, (src . dst) in @pairs -> need cleared
 *   forward/input 0    iptables filter MEMBRANE-AUTH: new and still needed -> NFQUEUE AUTH_QUEUE_NUM
 *   forward/input 10   <table> auth_gate_* (compile-auth.ts): still needed, no PKT_AUTH_OK -> drop 189
 *
 * The queue rule is an xtables target: nft here has no `queue` statement (CONFIG_NFT_QUEUE is
 * off, kernel-notes.md), but the queue itself is built in and iptables-nft reaches it through
 * nft_compat. No --queue-bypass: with no reader the kernel drops.
 * Pair keys: source identity . destination identity (`mark . mark`), each entry with a timeout
 * no later than the earlier expiry of the two SVIDs.
 */
import { CT_AUTH_NEEDED, AUTH_QUEUE_NUM, IDENTITY_MASK } from "../abi/marks.js";
import { MembraneError } from "../errors.js";
import { nftApply, runRaw } from "./exec.js";
import { hex } from "./policy-groups.js";

export const AUTH_CHAIN = "MEMBRANE-AUTH";

export interface AuthPairEntry {
  readonly src: number;
  readonly dst: number;
  /** Seconds left, as the kernel counts. */
  readonly expiresSeconds: number;
}

const checkRule = (): string =>
  `ct state new ct mark & ${hex(CT_AUTH_NEEDED)} != 0 meta mark & ${hex(IDENTITY_MASK)} . ct mark & ${hex(IDENTITY_MASK)} @pairs ` +
  `ct mark set ct mark and 0xf0000000`;

function checkId(n: number, what: string): void {
  if (!Number.isInteger(n) || n <= 0 || n > IDENTITY_MASK)
    throw new MembraneError(
      "AUTH_SETUP_FAILED",
      `Cannot write an auth pair: ${what} ${n} is not an identity`,
    );
}

export class AuthTable {
  readonly name: string;
  constructor(
    table: string,
    private readonly netns: string | undefined,
  ) {
    this.name = `${table}_auth`;
  }

  private opts(): { netns?: string } {
    return this.netns === undefined ? {} : { netns: this.netns };
  }

  /** Creates the table, set and chains (entries kept: a restarted agent adopts them), and the queue rules. */
  async install(): Promise<void> {
    const t = `inet ${this.name}`;
    await nftApply(
      [
        `add table ${t}`,
        `add set ${t} pairs { type mark . mark; flags timeout; }`,
        `add chain ${t} check_fwd { type filter hook forward priority -5; policy accept; }`,
        `add chain ${t} check_in { type filter hook input priority -5; policy accept; }`,
        `flush chain ${t} check_fwd`,
        `flush chain ${t} check_in`,
        `add rule ${t} check_fwd ${checkRule()}`,
        `add rule ${t} check_in ${checkRule()}`,
      ].join("\n") + "\n",
      this.opts(),
    );
    for (const bin of ["iptables", "ip6tables"]) await this.queueRules(bin);
  }

  private async queueRules(bin: string): Promise<void> {
    const ipt = async (args: string[], mayFail = false): Promise<boolean> => {
      const argv = this.netns === undefined ? [bin, "-w", ...args] : ["ip", "netns", "exec", this.netns, bin, "-w", ...args]; // prettier-ignore
      const r = await runRaw(argv, { timeoutMs: 30_000 }).catch((e: unknown) => ({ status: -1, stdout: "", stderr: String(e) })); // prettier-ignore
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

  /** Adds (or refreshes) the pair for `seconds`. */
  async add(src: number, dst: number, seconds: number): Promise<void> {
    checkId(src, "source");
    checkId(dst, "destination");
    const s = Math.max(1, Math.floor(seconds));
    const t = `inet ${this.name}`;
    // delete-then-add in one transaction: `add` keeps an existing element's old timeout.
    await nftApply(`add element ${t} pairs { ${src} . ${dst} timeout 1s }\ndelete element ${t} pairs { ${src} . ${dst} }\nadd element ${t} pairs { ${src} . ${dst} timeout ${s}s }\n`, this.opts()); // prettier-ignore
  }

  /** Removes pairs (missing ones are no error). */
  async remove(pairs: readonly { src: number; dst: number }[]): Promise<void> {
    if (pairs.length === 0) return;
    const t = `inet ${this.name}`;
    const lines = pairs.flatMap((p) => [`add element ${t} pairs { ${p.src} . ${p.dst} timeout 1s }`, `delete element ${t} pairs { ${p.src} . ${p.dst} }`]); // prettier-ignore
    await nftApply(lines.join("\n") + "\n", this.opts());
  }

  /** The pairs the kernel holds now. */
  async list(): Promise<AuthPairEntry[]> {
    const argv = ["nft", "-j", "list", "set", "inet", this.name, "pairs"];
    const r = await runRaw(this.netns === undefined ? argv : ["ip", "netns", "exec", this.netns, ...argv], { timeoutMs: 30_000 }); // prettier-ignore
    if (r.status !== 0) return [];
    const doc = JSON.parse(r.stdout) as { nftables?: { set?: { elem?: unknown[] } }[] };
    const out: AuthPairEntry[] = [];
    for (const item of doc.nftables ?? []) {
      for (const e of item.set?.elem ?? []) {
        const el = (e as { elem?: { val?: { concat?: unknown[] }; expires?: number } }).elem;
        const [src, dst] = el?.val?.concat ?? [];
        if (typeof src === "number" && typeof dst === "number")
          out.push({ src, dst, expiresSeconds: typeof el?.expires === "number" ? el.expires : 0 });
      }
    }
    return out;
  }
}
