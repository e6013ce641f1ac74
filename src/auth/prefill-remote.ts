/**
 * Cross-node pairs authenticated before their first packet (issue 12), as local pairs are
 * (prefill.ts): when a rule of this node's policy requires authentication between an identity of
 * a local endpoint and one whose endpoints live on a peer node, the agent authenticates the pair
 * with that node's agent over the pooled connection (channel.ts) ahead of any traffic; the peer
 * writes its own entry too when its policy requires the pair (responder, channel-server.ts).
 *
 *   applied policy (auth segments naming an identity) x where that identity's endpoints live
 *     (endpoints of every node, nodeOf(ip)) --remotePairsToPrefill--> [{src, dst, srcNode, dstNode}]
 *   --> AuthManager.authenticatePair (the same request, checks and kernel write as a held packet)
 *
 * Bounded: at most MAX_REMOTE_PER_PASS pairs a pass, REMOTE_CONCURRENCY requests at once, a token
 * bucket of REMOTE_PER_SECOND across passes, one pass at a time, and a pair that failed waits
 * RETRY_MS before it is tried ahead again (its first packet is still held and judged as always:
 * fail closed). A pass never blocks the judging of pairs (revocation keeps its 5 s cadence):
 * it runs beside it. Revocation is unchanged: judge.ts removes a prefilled pair exactly as any.
 */
import type { DatapathState } from "../datapath/types.js";
import type { AuthManager } from "./manager.js";
import { pairKey, type Pair } from "./pairs.js";
import { authRequired } from "./judge.js";

export const MAX_REMOTE_PER_PASS = 32;
export const REMOTE_CONCURRENCY = 4;
export const REMOTE_PER_SECOND = 50;
export const RETRY_MS = 10_000;
const FIRST_CLUSTER_IDENTITY = 256;

export interface RemoteWant {
  readonly src: number;
  readonly dst: number;
  readonly srcNode: string;
  readonly dstNode: string;
}

/**
 * Cross-node (source, destination, nodes) pairs this node's rules require, for identities of
 * local endpoints (`local`) and peers' placement (`placement`: identity -> peer nodes with an
 * endpoint of it). Named identities only (a rule of any identity names no pair), cluster
 * identities only, minus `skip`; sorted, at most `max`.
 */
export function remotePairsToPrefill(
  state: DatapathState,
  local: ReadonlySet<number>,
  placement: ReadonlyMap<number, ReadonlySet<string>>,
  self: string,
  skip: (w: RemoteWant) => boolean,
  max = MAX_REMOTE_PER_PASS,
): RemoteWant[] {
  const out = new Map<string, RemoteWant>();
  const add = (w: RemoteWant): void => {
    if (w.src < FIRST_CLUSTER_IDENTITY || w.dst < FIRST_CLUSTER_IDENTITY || skip(w)) return;
    out.set(`${w.src}.${w.dst}.${w.srcNode}.${w.dstNode}`, w);
  };
  for (const ep of state.endpoints) {
    if (!local.has(ep.identity)) continue;
    for (const s of ep.ingress.segments)
      if (s.action === "auth" && s.identity !== 0)
        for (const node of placement.get(s.identity) ?? []) add({ src: s.identity, dst: ep.identity, srcNode: node, dstNode: self }); // prettier-ignore
    for (const s of ep.egress.segments)
      if (s.action === "auth" && s.identity !== 0)
        for (const node of placement.get(s.identity) ?? []) add({ src: ep.identity, dst: s.identity, srcNode: self, dstNode: node }); // prettier-ignore
  }
  const key = (w: RemoteWant): string => `${w.srcNode}\0${w.dstNode}`;
  return [...out.values()]
    .sort((a, b) => a.src - b.src || a.dst - b.dst || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
    .slice(0, max);
}

/** The state of cross-node prefill on one agent: the pass under way, the rate, the pairs that failed. */
export class RemotePrefill {
  private running: Promise<number> | undefined;
  private readonly failedUntil = new Map<string, number>();
  private tokens = REMOTE_PER_SECOND;
  private last = 0;
  /** Pairs authenticated ahead, attempts that failed, and passes completed so far. */
  readonly stats = { done: 0, failed: 0, passes: 0 };
  /** Off: only held first packets authenticate cross-node pairs (the agent's --auth-prefill local). */
  enabled = true;

  /** The placement the poll last saw (a change starts a pass). */
  private placementKey = "";

  private ticks = 0;

  /** Starts a pass beside whatever runs (errors logged): a policy state or the placement changed. */
  kick(m: AuthManager): void {
    void this.pass(m).catch((e: unknown) => m.p.logger.error({ err: (e as Error).message }, "authenticating cross-node pairs ahead failed")); // prettier-ignore
  }

  /** The manager's 250 ms poll: once a second, a pass when the placement of peers' endpoints changed. */
  tick(m: AuthManager): void {
    if (!this.enabled || !m.p.cluster || ++this.ticks % 4 !== 0) return;
    const k = placementKey(placementOf(m));
    if (k === this.placementKey) return;
    this.placementKey = k;
    this.kick(m);
  }

  /** Starts a pass unless one runs (then that one's promise): the number of pairs authenticated. */
  pass(m: AuthManager): Promise<number> {
    this.running ??= this.run(m).finally(() => (this.running = undefined));
    return this.running;
  }

  private take(now: number): boolean {
    this.tokens = Math.min(REMOTE_PER_SECOND, this.tokens + ((now - this.last) / 1000) * REMOTE_PER_SECOND);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private async run(m: AuthManager): Promise<number> {
    const state = m.p.state();
    const n = m.nodes;
    if (!this.enabled || !state || !m.p.cluster || !m.channels || m.transport !== "channel") return 0;
    const now = m.now();
    for (const [k, until] of this.failedUntil) if (until <= now) this.failedUntil.delete(k);
    const placement = placementOf(m);
    const pairOf = (w: RemoteWant): Pair => ({ ...w, srcNets: n.netsOf(w.srcNode), dstNets: n.netsOf(w.dstNode), expiresMs: 0, chains: [], serials: new Map(), srcIps: new Set(), dstIps: new Set() }); // prettier-ignore
    const skip = (w: RemoteWant): boolean => {
      if (m.revoked.has(w.src) || m.revoked.has(w.dst) || !n.peerAddress(w.srcNode === n.self ? w.dstNode : w.srcNode)) return true; // prettier-ignore
      const k = pairKey(pairOf(w));
      const have = m.pairs.get(k);
      return (have !== undefined && have.expiresMs > now + 1000) || this.failedUntil.has(k);
    };
    const wants = remotePairsToPrefill(state, m.p.localIdentities(), placement, n.self, skip);
    let done = 0;
    const next = async (): Promise<void> => {
      for (let w = wants.shift(); w; w = wants.shift()) {
        if (!this.take(m.now())) return; // over the rate: the rest waits for a later pass
        const cur = m.p.state();
        if (!cur || !authRequired(cur, w.src, w.dst)) continue; // the policy changed meanwhile
        const pair = pairOf(w);
        try {
          if (await m.authenticatePair(pair)) {
            done++;
            this.stats.done++;
          }
        } catch (e) {
          this.stats.failed++;
          if (this.failedUntil.size > 4096) this.failedUntil.clear();
          this.failedUntil.set(pairKey(pair), m.now() + RETRY_MS);
          m.p.logger.debug({ source: w.src, destination: w.dst, srcNode: w.srcNode, dstNode: w.dstNode, err: (e as Error).message }, "a cross-node pair did not authenticate ahead of its first packet"); // prettier-ignore
        }
      }
    };
    await Promise.all(Array.from({ length: REMOTE_CONCURRENCY }, next));
    this.stats.passes++;
    return done;
  }
}

/** identity -> peer nodes holding an endpoint of it (from the endpoints of every node). */
export function placementOf(m: AuthManager): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>();
  const self = m.nodes.self;
  for (const e of m.p.endpoints()) {
    const node = m.nodes.nodeOf(e.ip);
    if (node === undefined || node === self) continue;
    const s = out.get(e.identity) ?? new Set<string>();
    s.add(node);
    out.set(e.identity, s);
  }
  return out;
}

/** A short fingerprint of the placement (identity@node), for the manager's change poll. */
export function placementKey(p: ReadonlyMap<number, ReadonlySet<string>>): string {
  return [...p]
    .flatMap(([id, nodes]) => [...nodes].map((n) => `${id}@${n}`))
    .sort()
    .join(",");
}
