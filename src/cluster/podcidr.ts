/**
 * Pod CIDR claims (`cluster/podcidrs/<node>`, keys.ts): each node claims its
 * pod CIDRs under its own key, persistently (a restarted node keeps them).
 *
 *   claim() ──list podcidrs/──▶ first block of the cluster CIDR no claim overlaps
 *           ──put own key──▶ list again (revision >= the put's)
 *           ──an overlapping claim with a smaller revision?──▶ withdraw, try again
 *
 * The claim with the smallest modRevision (its last put) wins an overlap,
 * everywhere: a claim changed later (widened) counts from then, so it takes
 * nothing from nodes that claimed meanwhile; a
 * node uses its CIDRs only after the read-back showed it won. A CIDR given
 * with --pod-cidr is claimed as configured; overlapping an earlier claim of
 * another node is an error naming that node (nothing is taken from it).
 */
import { MembraneError } from "../errors.js";
import { mask, parsePrefix, prefixString, type Prefix } from "../labels/cidr.js";
import type { KeyValue } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { CLUSTER_KEYS, podCidrKey, type PodCidrClaimV1 } from "./keys.js";

export interface PodCidrConfig {
  /** --pod-cidr / --pod-cidr6 given: claim exactly these. */
  readonly configured?: { readonly ipv4?: string; readonly ipv6?: string };
  /** --cluster-cidr: allocate from these (per family) when not configured. */
  readonly clusterCidr?: { readonly ipv4?: string; readonly ipv6?: string };
  /** Prefix length of a node's block (--cluster-cidr-mask-size / -mask-size6); defaults 24 and 112. */
  readonly maskSize4?: number;
  readonly maskSize6?: number;
}

/** How many times a node withdraws a losing claim before giving up (each loss means another node won). */
const MAX_ROUNDS = 64;

interface Claim {
  readonly node: string;
  /** The revision of the claim's last put: a changed claim counts as new (keys.ts). */
  readonly revision: number;
  readonly prefixes: readonly Prefix[];
}

function parseClaim(kv: KeyValue): Claim | undefined {
  const node = kv.key.slice(CLUSTER_KEYS.podCidrs.length);
  try {
    const v = JSON.parse(kv.value) as Partial<PodCidrClaimV1>;
    if (v.v !== 1) return undefined;
    const prefixes = [v.ipv4, v.ipv6]
      .filter((c): c is string => typeof c === "string")
      .map((c) => parsePrefix(c))
      .filter((p): p is Prefix => p !== undefined);
    return { node, revision: kv.modRevision, prefixes };
  } catch {
    return undefined; // not a claim: never trusted, never blocks anyone
  }
}

function overlaps(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.bits, b.bits);
  const m = mask(a.family, bits);
  return (a.addr & m) === (b.addr & m);
}

function checkCidr(cidr: string, family: 4 | 6, flag: string): Prefix {
  const p = parsePrefix(cidr);
  if (!p || p.family !== family || !cidr.includes("/")) {
    throw new MembraneError(
      "CLUSTER_INVALID",
      `Cannot use ${flag} ${JSON.stringify(cidr)}: not an IPv${family} CIDR`,
    );
  }
  return p;
}

/** Validates a PodCidrConfig (flags named in the errors). */
export function validatePodCidrConfig(c: PodCidrConfig): void {
  if (c.configured?.ipv4) checkCidr(c.configured.ipv4, 4, "--pod-cidr");
  if (c.configured?.ipv6) checkCidr(c.configured.ipv6, 6, "--pod-cidr6");
  const m4 = c.maskSize4 ?? 24;
  const m6 = c.maskSize6 ?? 112;
  if (c.clusterCidr?.ipv4) {
    const p = checkCidr(c.clusterCidr.ipv4, 4, "--cluster-cidr");
    if (!Number.isInteger(m4) || m4 < p.bits || m4 > 30)
      throw new MembraneError(
        "CLUSTER_INVALID",
        `Cannot use --cluster-cidr-mask-size ${m4}: it must be an integer from ${p.bits} (the cluster CIDR's) to 30`,
      );
  }
  if (c.clusterCidr?.ipv6) {
    const p = checkCidr(c.clusterCidr.ipv6, 6, "--cluster-cidr");
    if (!Number.isInteger(m6) || m6 < p.bits || m6 > 126)
      throw new MembraneError(
        "CLUSTER_INVALID",
        `Cannot use --cluster-cidr-mask-size6 ${m6}: it must be an integer from ${p.bits} (the cluster CIDR's) to 126`,
      );
  }
}

export class PodCidrAllocator {
  constructor(
    private readonly ctx: Pick<ClusterContext, "kv" | "node" | "logger">,
    private readonly cfg: PodCidrConfig,
  ) {
    validatePodCidrConfig(cfg);
  }

  private async claims(): Promise<{ mine?: KeyValue; others: Claim[] }> {
    const { kvs } = await this.ctx.kv.list(CLUSTER_KEYS.podCidrs);
    const key = podCidrKey(this.ctx.node);
    let mine: KeyValue | undefined;
    const others: Claim[] = [];
    for (const kv of kvs) {
      if (kv.key === key) mine = kv;
      else {
        const c = parseClaim(kv);
        if (c) others.push(c);
      }
    }
    return { ...(mine ? { mine } : {}), others };
  }

  /** The first claim (other node) with a smaller revision that overlaps `p`. */
  private static winner(p: Prefix, revision: number, others: readonly Claim[]): Claim | undefined {
    return others
      .filter((c) => c.revision < revision && c.prefixes.some((q) => overlaps(p, q)))
      .sort((a, b) => a.revision - b.revision)[0];
  }

  /** What this node should claim now, given the others' claims (undefined entries: none for that family). */
  private want(mine: PodCidrClaimV1 | undefined, others: readonly Claim[]): PodCidrClaimV1 {
    const conf = this.cfg.configured;
    if (conf?.ipv4 || conf?.ipv6) {
      const canon = (c: string | undefined): string | undefined =>
        c === undefined ? undefined : prefixString(parsePrefix(c) as Prefix);
      const v4 = canon(conf.ipv4);
      const v6 = canon(conf.ipv6);
      return { v: 1, ...(v4 ? { ipv4: v4 } : {}), ...(v6 ? { ipv6: v6 } : {}), allocated: false };
    }
    const cc = this.cfg.clusterCidr;
    if (!cc?.ipv4 && !cc?.ipv6) {
      throw new MembraneError(
        "CLUSTER_INVALID",
        "Cannot choose this node's pod CIDR: neither --pod-cidr nor --cluster-cidr is given",
        {
          hint: "give --cluster-cidr (e.g. 10.200.0.0/16) to allocate one per node, or --pod-cidr",
        },
      );
    }
    const taken = others.flatMap((c) => c.prefixes);
    const pick = (family: 4 | 6, cluster: string, size: number, current?: string): string => {
      const outer = parsePrefix(cluster) as Prefix;
      const cur = current ? parsePrefix(current) : undefined;
      // Keep the current block when it still fits (restart) and nobody else holds it.
      if (
        cur &&
        cur.family === family &&
        cur.bits === size &&
        (cur.addr & mask(family, outer.bits)) === outer.addr
      )
        return prefixString(cur);
      const width = family === 4 ? 32 : 128;
      const count = 1n << BigInt(size - outer.bits);
      const step = 1n << BigInt(width - size);
      for (let i = 0n; i < count; i++) {
        const p: Prefix = { family, addr: outer.addr + i * step, bits: size };
        if (!taken.some((q) => overlaps(p, q))) return prefixString(p);
      }
      throw new MembraneError(
        "CLUSTER_INVALID",
        `Cannot allocate a /${size} pod CIDR for node ${this.ctx.node}: every block of the cluster CIDR ${cluster} is claimed (${others.length} claims by other nodes)`,
        {
          hint: "use a larger --cluster-cidr or a longer --cluster-cidr-mask-size, or remove the claims of nodes that are gone (cluster/podcidrs/<node>)",
        },
      );
    };
    return {
      v: 1,
      ...(cc.ipv4
        ? { ipv4: pick(4, cc.ipv4, this.cfg.maskSize4 ?? 24, mine?.allocated ? mine.ipv4 : undefined) }
        : {}),
      ...(cc.ipv6
        ? { ipv6: pick(6, cc.ipv6, this.cfg.maskSize6 ?? 112, mine?.allocated ? mine.ipv6 : undefined) }
        : {}),
      allocated: true,
    };
  }

  /** Claims (or confirms) this node's pod CIDRs; returns them once the read-back shows this node won. */
  async claim(): Promise<PodCidrClaimV1> {
    const key = podCidrKey(this.ctx.node);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const { mine, others } = await this.claims();
      let current: PodCidrClaimV1 | undefined;
      try {
        current = mine ? (JSON.parse(mine.value) as PodCidrClaimV1) : undefined;
      } catch {
        current = undefined;
      }
      const want = this.want(current, others);
      const same = current !== undefined && JSON.stringify(current) === JSON.stringify(want);
      let revision: number;
      if (same && mine) {
        revision = mine.modRevision;
      } else {
        // A new or changed claim counts from this put (its modRevision): it takes nothing claimed before it.
        const r = await this.ctx.kv.txn({
          compare: [{ key, modRevision: mine?.modRevision ?? 0 }],
          ops: [{ type: "put", key, value: JSON.stringify(want) }],
        });
        if (!r.succeeded) continue; // our own key changed under us (another agent with our name?): read again
        revision = r.revision;
      }
      // Read back at a revision >= the put's: every earlier claim is visible now.
      const after = await this.claims();
      const losses = [want.ipv4, want.ipv6]
        .filter((c): c is string => c !== undefined)
        .map((c) => ({
          cidr: c,
          w: PodCidrAllocator.winner(parsePrefix(c) as Prefix, revision, after.others),
        }))
        .filter((x) => x.w !== undefined);
      const loss = losses[0];
      if (loss === undefined) {
        this.ctx.logger.info({ podCidrs: want, round }, "pod CIDRs claimed");
        return want;
      }
      if (!want.allocated) {
        await this.withdraw(key, revision);
        throw new MembraneError(
          "CLUSTER_INVALID",
          `Cannot use --pod-cidr ${loss.cidr} for node ${this.ctx.node}: it overlaps the pod CIDRs node ${loss.w?.node} claimed first`,
          {
            hint: "choose a CIDR no other node uses (`membrane get nodes` lists them), or use --cluster-cidr",
          },
        );
      }
      this.ctx.logger.info(
        { cidr: loss.cidr, winner: loss.w?.node },
        "pod CIDR claim lost an overlap; claiming again",
      );
      await this.withdraw(key, revision);
    }
    throw new MembraneError(
      "CLUSTER_UNAVAILABLE",
      `Cannot claim a pod CIDR for node ${this.ctx.node}: lost ${MAX_ROUNDS} rounds in a row`,
    );
  }

  private async withdraw(key: string, revision: number): Promise<void> {
    // Only the claim this round put (a later put of ours is not withdrawn by an older round).
    const kv = await this.ctx.kv.get(key);
    if (kv && kv.modRevision === revision) {
      await this.ctx.kv.txn({
        compare: [{ key, modRevision: revision }],
        ops: [{ type: "delete", key }],
      });
    }
  }
}
