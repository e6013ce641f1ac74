/**
 * Mutual authentication on this node: the agent's answer to a first packet held in the queue,
 * and the life of the pairs it authenticated.
 *
 *   kernel: new connection, rule requires auth, pair not in @pairs4/6 --NFQUEUE--> onPacket
 *     source identity = packet mark (pre_c set it), destination = ipcache[daddr]
 *     nodes of saddr and daddr (pod CIDR owners): the pair is (src, dst, src node, dst node)
 *     cached and valid?  yes: release (PKT_AUTH_OK)
 *     both ends here: both SVIDs validated, each key proven by a signature, in-process
 *     one end on a peer node: one request on the pooled TLS connection to that node's agent
 *       (channel.ts); transport "per-pair": a TLS 1.3 handshake per pair (handshake.ts, peer-handshake.ts)
 *         ok: release with PKT_AUTH_OK, add the pair to the kernel until the earlier SVID expiry
 *         refused / no answer in time: release without the bit; the gate drops it, logged 189
 *   (the handshake of a pair: pair-handshake.ts)
 *   every MAINTAIN_MS and on a bundle or SVID change: judge.ts -> remove entries, cut.ts the
 *   connections; a pair whose own SVID rotated is authenticated again (make before break)
 *   prefill (on by the agent's default): local pairs the policy requires are authenticated at
 *   policy time, before their first packet (prefill.ts); cross-node ones over the pooled
 *   connection when the peer's endpoints are known (prefill-remote.ts, bounded, rate-limited)
 *
 * Released without the bit rather than NF_DROP: the drop is then the kernel's, with its NFLOG
 * flow (AUTH_REQUIRED), exactly as when the agent answers nothing in time. Identities below 256
 * (host, world, ...) never authenticate, nor a revoked one. Each held packet's path is timed
 * (timing.ts: the "authentication profile" log line). Entries live in the kernel
 * (datapath/auth-table.ts) and outlive the agent; a starting agent adopts them. Concurrent first
 * packets of one pair share one handshake.
 */
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { IDENTITY_MASK, PKT_AUTH_OK, AUTH_QUEUE_NUM } from "../abi/marks.js";
import type { QueuedPacket } from "../abi/nfqueue-wire.js";
import type { AuthTable } from "../datapath/auth-table.js";
import type { DatapathState } from "../datapath/types.js";
import { MembraneError } from "../errors.js";
import type { SvidProvider } from "../spiffe/provider.js";
import { AuthQueue } from "./queue.js";
import { packetAddresses } from "./packet.js";
import { ContextCache } from "./peer-handshake.js";
import { localPair, remotePair } from "./pair-handshake.js";
import { SvidValidationCache } from "../spiffe/validate-cache.js";
import type { PeerNet } from "./peer-net.js";
import { judgePairs } from "./judge.js";
import { prefillLocalPairs } from "./prefill.js";
import { RemotePrefill } from "./prefill-remote.js";
import { cutConnections } from "./cut.js";
import { Phases, Profiles } from "./timing.js";
import { SigningKeys } from "./pair-proof.js";
import type { PeerChannels } from "./channel.js";
import { ipsByIdentity, singleNode, type AuthNodes, type Pair, pairKey, pairView, type AuthPairView } from "./pairs.js"; // prettier-ignore

export type { AuthPairView } from "./pairs.js";

export interface AuthManagerParams {
  readonly logger: Logger;
  readonly provider: SvidProvider;
  readonly table: AuthTable;
  readonly netns?: string;
  readonly nodeName: string;
  /** The identity of an address (the agent's ipcache). */
  readonly identityOf: (ip: string) => number;
  /** Identities of this node's endpoints. */
  readonly localIdentities: () => ReadonlySet<number>;
  /** Endpoints of every node (address, identity; the namespace of this node's). */
  readonly endpoints: () => readonly { ip: string; identity: number; netns?: string }[];
  /** The policy the kernel holds (the enforcer's last applied state). */
  readonly state: () => DatapathState | undefined;
  /** Cluster mode: no pair is made before the cluster's nodes are known (attach()). */
  readonly cluster?: boolean;
  readonly registry?: Registry;
  /** Longest a first packet waits for a handshake (default 5 s: TCP retransmits the SYN at 1 s meanwhile, held too). */
  readonly handshakeTimeoutMs?: number;
  /** How often pairs are judged (default 5 s: revocation within 30 s). */
  readonly maintainMs?: number;
  /** Authenticate local pairs the policy requires before their first packet (prefill.ts). */
  readonly prefill?: boolean;
  /** How a pair authenticates (default channel; see AuthTransport). */
  readonly transport?: AuthTransport;
}

/**
 * channel: a request on the pooled connection to the peer node's agent (channel.ts), and for two
 * local ends the same proof in-process (pair-handshake.ts); per-pair: a TCP connection and a TLS
 * 1.3 handshake per pair (peer-handshake.ts), in-process TLS for local pairs (handshake.ts).
 */
export type AuthTransport = "channel" | "per-pair";

const FIRST_CLUSTER_IDENTITY = 256;
/** How long a refused pair is refused without a new handshake. */
const REFUSED_MS = 1000;
const NOT_ATTACHED: AuthNodes = { self: "", nodeOf: () => undefined, netsOf: () => [], peerAddress: () => undefined, nodeAt: () => undefined, rootsOf: () => [] }; // prettier-ignore

export class AuthManager {
  readonly pairs = new Map<string, Pair>();
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly refused = new Map<string, { until: number; why: string }>();
  readonly revoked = new Set<number>();
  /** The NFQUEUE of held first packets (queue.ts). */
  readonly queue: AuthQueue;
  private readonly handshakes: Counter<"result">;
  private readonly latency: Histogram;
  private readonly removed: Counter<"reason">;
  readonly contexts = new ContextCache();
  /** SVID validations remembered per exact chain and bundle (the first packet's path skips re-parsing). */
  readonly verified = new SvidValidationCache();
  /** SVID private keys as signing objects (pair-proof.ts). */
  readonly keys = new SigningKeys();
  /** Where the time of the last pairs went (timing.ts). */
  readonly profiles: Profiles;
  transport: AuthTransport;
  nodes: AuthNodes;
  net: PeerNet | undefined;
  /** Cross-node pairs authenticated ahead of their first packet (prefill-remote.ts). */
  readonly remotePrefill = new RemotePrefill();
  /** Pooled connections to peer nodes (cluster mode, auth/cluster.ts). */
  channels: PeerChannels | undefined;
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private lastState: unknown;
  private maintaining: Promise<void> = Promise.resolve();
  private lastLive = new Set<number>();
  private lastBundle: Buffer[] = [];
  private readonly history = new Map<number, Set<string>>();
  private unsubscribe: (() => void) | undefined;
  readonly now = Date.now;

  constructor(readonly p: AuthManagerParams) {
    this.nodes = p.cluster ? NOT_ATTACHED : singleNode(p.nodeName);
    this.transport = p.transport ?? "channel";
    this.profiles = new Profiles(p.logger);
    this.queue = new AuthQueue({
      queue: AUTH_QUEUE_NUM,
      ...(p.netns !== undefined ? { netns: p.netns } : {}),
      onPacket: (pkt, lagMs) => void this.onPacket(pkt, lagMs),
      onError: (e) => p.logger.error({ err: e.message }, "the authentication queue reader failed: new pairs are refused"), // prettier-ignore
    });
    const registers = p.registry ? [p.registry] : [];
    this.handshakes = new Counter({ name: "membrane_auth_handshakes_total", help: "Mutual-authentication handshakes by result (success, failure, timeout)", labelNames: ["result"], registers }); // prettier-ignore
    this.latency = new Histogram({ name: "membrane_auth_handshake_duration_seconds", help: "Time from a held first packet to its verdict", buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2], registers }); // prettier-ignore
    this.removed = new Counter({ name: "membrane_auth_pairs_revoked_total", help: "Authenticated pairs removed before their expiry, by reason", labelNames: ["reason"], registers }); // prettier-ignore
  }

  /** Installs the table and queue rule, adopts the kernel's pairs, and starts answering the queue. */
  async start(): Promise<void> {
    await this.p.table.install();
    for (const e of await this.p.table.list()) {
      const pr: Pair = { src: e.src, dst: e.dst, srcNets: [e.srcNet], dstNets: [e.dstNet], expiresMs: this.now() + e.expiresSeconds * 1000, chains: [], serials: new Map(), srcIps: new Set(), dstIps: new Set() }; // prettier-ignore
      this.pairs.set(pairKey(pr), pr);
    }
    if (this.pairs.size > 0) this.p.logger.info({ pairs: this.pairs.size }, "adopted authenticated pairs");
    await this.queue.start();
    this.unsubscribe = this.p.provider.subscribe(() => this.maintainSoon());
    this.timer = setInterval(() => this.maintainSoon(), this.p.maintainMs ?? 5000);
    this.timer.unref();
    // A new policy state (an apply, an endpoint): local pairs are prefilled without waiting for the timer.
    // Cross-node pairs also when peers' endpoints move (prefill-remote.ts: checked once a second).
    this.poll = setInterval(() => this.p.prefill && (this.p.state() !== this.lastState ? this.prefillSoon() : this.remotePrefill.tick(this)), 250); // prettier-ignore
    this.poll.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.poll) clearInterval(this.poll);
    this.unsubscribe?.();
    this.channels?.stop();
    this.net?.close();
    await this.maintaining;
    await this.queue.stop();
    this.profiles.stop();
    this.p.table.close();
  }

  /** The authenticated pairs the kernel holds (expired ones are gone there too). */
  async list(): Promise<AuthPairView[]> {
    return pairView(await this.p.table.list(), [...this.pairs.values()], this.nodes, this.now());
  }

  /** The identity's current X.509-SVID without its key: PEM chain and validity. */
  svid(identity: number): Record<string, unknown> | undefined {
    const s = this.p.provider.current(identity);
    if (!s) return undefined;
    return { ...s.toJSON(), revoked: this.revoked.has(identity), certificates: s.pem() };
  }

  /**
   * Withholds the identity's SVID from handshakes and removes its pairs (as deleting its SPIRE
   * registration entry would): its new connections under rules requiring auth drop with 189.
   */
  async revoke(identity: number): Promise<number> {
    this.revoked.add(identity);
    const gone = [...this.pairs.values()].filter((x) => x.src === identity || x.dst === identity);
    await this.removePairs(gone.map((pair) => ({ pair, why: `identity ${identity} is revoked` })), true); // prettier-ignore
    return gone.length;
  }

  restore(identity: number): boolean {
    this.refused.clear();
    return this.revoked.delete(identity);
  }

  get revokedIdentities(): number[] {
    return [...this.revoked].sort((a, b) => a - b);
  }

  /** Judges the pairs soon (coalesced): a bundle or SVID change, the timer, a test. */
  maintainSoon(): Promise<void> {
    const run = (): Promise<void> => this.maintain().catch((e: unknown) => this.p.logger.error({ err: (e as Error).message }, "judging the authenticated pairs failed")); // prettier-ignore
    this.maintaining = this.maintaining.then(run, run);
    return this.maintaining;
  }

  private async maintain(): Promise<void> {
    const ips = ipsByIdentity(this.p.endpoints());
    // Cluster mode: nothing is judged before the cluster's nodes and endpoints are known (a
    // restarted agent would otherwise find the remote identities missing and cut live pairs).
    if (this.nodes === NOT_ATTACHED) return;
    // An identity counts as gone only when two passes in a row miss it (a relabel or a resync in
    // flight is not a deletion).
    const live = new Set([...ips.keys(), ...this.lastLive]);
    this.lastLive = new Set(ips.keys());
    // Addresses each pair's identities had while the pair lived (an endpoint relabelled or deleted
    // since still has its connections of the old pair).
    const inPairs = new Set([...this.pairs.values()].flatMap((x) => [x.src, x.dst]));
    for (const id of [...this.history.keys()]) if (!inPairs.has(id)) this.history.delete(id);
    for (const id of inPairs) for (const a of ips.get(id) ?? []) this.history.set(id, (this.history.get(id) ?? new Set()).add(a)); // prettier-ignore
    // Likewise a root counts as dropped from the bundle only when two passes in a row miss it.
    const bundle = this.p.provider.bundle();
    const both = [...new Map([...bundle, ...this.lastBundle].map((b) => [b.toString("base64"), b])).values()];
    this.lastBundle = bundle;
    const facts = { live, revoked: this.revoked, state: this.p.state(), bundle: both, trustDomain: this.p.provider.trustDomain, now: this.now(), cache: this.verified }; // prettier-ignore
    const gone = judgePairs(this.pairs.values(), facts);
    if (gone.length > 0) await this.removePairs(gone, true, ips);
    // Make before break: a pair whose SVID on this node rotated is authenticated again with the new one.
    for (const pair of [...this.pairs.values()]) {
      const stale = [...pair.serials].some(([id, serial]) => this.p.provider.current(id)?.serial !== serial);
      if (!stale || pair.srcNode === undefined || pair.dstNode === undefined) continue;
      const ok = await this.authenticatePair(pair).catch(() => false);
      if (!ok) await this.removePairs([{ pair, why: "its SVID rotated and the pair could not authenticate again" }], true); // prettier-ignore
    }
    if (this.p.prefill) await prefillLocalPairs(this);
    if (this.p.prefill) this.remotePrefill.kick(this); // beside the judging, never in its way
  }

  /** Prefills local pairs of a new policy state (in turn with the judging: never beside it). */
  private prefillSoon(): void {
    this.lastState = this.p.state();
    if (this.nodes !== NOT_ATTACHED) this.remotePrefill.kick(this);
    const run = (): Promise<unknown> =>
      this.nodes === NOT_ATTACHED ? Promise.resolve() : prefillLocalPairs(this);
    this.maintaining = this.maintaining.then(run, run).then(
      () => undefined,
      () => undefined,
    );
  }

  private async removePairs(
    gone: readonly { pair: Pair; why: string }[],
    cut: boolean,
    ips = ipsByIdentity(this.p.endpoints()),
  ): Promise<void> {
    if (gone.length === 0) return;
    for (const { pair, why } of gone) {
      // Addresses of the pair's identities, now and while the pair lived.
      for (const a of [...(ips.get(pair.src) ?? []), ...(this.history.get(pair.src) ?? [])])
        pair.srcIps.add(a);
      for (const a of [...(ips.get(pair.dst) ?? []), ...(this.history.get(pair.dst) ?? [])])
        pair.dstIps.add(a);
      this.pairs.delete(pairKey(pair));
      this.removed.inc({ reason: why.replace(/[0-9]+/g, "N").slice(0, 60) });
      this.p.logger.info({ source: pair.src, destination: pair.dst, srcNode: pair.srcNode, dstNode: pair.dstNode, why }, "authenticated pair removed"); // prettier-ignore
    }
    await this.p.table.remove(gone.map((g) => g.pair));
    if (!cut) return;
    const byIp = new Map(this.p.endpoints().filter((e) => e.netns !== undefined).map((e) => [e.ip, e.netns as string])); // prettier-ignore
    const r = await cutConnections(gone.map((g) => g.pair), { ...(this.p.netns !== undefined ? { nodeNetns: this.p.netns } : {}), netnsOfIp: (ip) => byIp.get(ip) }); // prettier-ignore
    if (r.connections > 0 || r.problems.length > 0) this.p.logger.info(r, "cut the connections of pairs no longer authenticated"); // prettier-ignore
  }

  private async onPacket(pkt: QueuedPacket, lagMs: number): Promise<void> {
    const t0 = performance.now();
    const ph = new Phases(lagMs);
    let ok = false;
    try {
      ok = await this.authenticate(pkt, ph);
    } catch (e) {
      this.p.logger.warn({ err: (e as Error).message }, "mutual authentication failed: the packet drops (AUTH_REQUIRED)"); // prettier-ignore
    }
    this.latency.observe((performance.now() - t0) / 1000);
    // Without the bit the gate drops the packet and logs it (189).
    this.queue.verdict(pkt, true, ok ? (pkt.mark | PKT_AUTH_OK) >>> 0 : pkt.mark & ~PKT_AUTH_OK);
    ph.mark("released");
  }

  private async authenticate(pkt: QueuedPacket, ph: Phases): Promise<boolean> {
    const addrs = packetAddresses(pkt.payload);
    if (!addrs) throw new MembraneError("AUTH_HANDSHAKE_FAILED", "Cannot authenticate: the queued packet is not IPv4 or IPv6"); // prettier-ignore
    const src = pkt.mark & IDENTITY_MASK;
    const dst = this.p.identityOf(addrs.dst);
    const n = this.nodes;
    const srcNode = n.nodeOf(addrs.src);
    const dstNode = n.nodeOf(addrs.dst);
    const where = srcNode === undefined ? addrs.src : addrs.dst;
    if (srcNode === undefined || dstNode === undefined) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${src} -> ${dst}: no node of the cluster owns ${where}`); // prettier-ignore
    if (srcNode !== n.self && dstNode !== n.self) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${src} -> ${dst}: neither end is on this node`); // prettier-ignore
    const pair: Pair = { src, dst, srcNode, dstNode, srcNets: n.netsOf(srcNode), dstNets: n.netsOf(dstNode), expiresMs: 0, chains: [], serials: new Map(), srcIps: new Set([addrs.src]), dstIps: new Set([addrs.dst]) }; // prettier-ignore
    const k = pairKey(pair);
    const have = this.pairs.get(k);
    if (have && have.expiresMs > this.now() + 1000) return true;
    // A pair refused within the last REFUSED_MS is refused again at once: a flood of first
    // packets (retransmits, many connections) costs a map lookup, not a handshake each.
    const no = this.refused.get(k);
    if (no && no.until > this.now()) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `${no.why} (refused again within ${REFUSED_MS} ms)`); // prettier-ignore
    try {
      return await this.authenticatePair(pair, ph);
    } catch (e) {
      if (this.refused.size > 4096) this.refused.clear();
      this.refused.set(k, { until: this.now() + REFUSED_MS, why: (e as Error).message });
      throw e;
    }
  }

  /** One handshake per pair at a time (concurrent first packets share it). */
  authenticatePair(pair: Pair, ph = new Phases()): Promise<boolean> {
    const k = pairKey(pair);
    let run = this.inflight.get(k);
    if (!run) {
      run = this.handshake(pair, ph).finally(() => this.inflight.delete(k));
      this.inflight.set(k, run);
    }
    return run;
  }

  /** Refuses reserved and revoked identities and an end of this node without an endpoint here. */
  checkIdentity(id: number, local: boolean): void {
    const refuse = (why: string): never => {
      throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate: identity ${id} ${why}`);
    };
    if (id < FIRST_CLUSTER_IDENTITY) refuse("is reserved: it has no SVID");
    if (this.revoked.has(id)) refuse("is revoked");
    if (local && !this.p.localIdentities().has(id)) refuse("has no endpoint on this node");
  }

  private async handshake(pair: Pair, ph: Phases): Promise<boolean> {
    const t0 = performance.now();
    ph.mark("start");
    try {
      const self = this.nodes.self;
      const local = pair.srcNode === self && pair.dstNode === self;
      const r = local
        ? await localPair(this, pair, ph)
        : await remotePair(this, pair, pair.srcNode === self ? "s" : "d", ph);
      const ttlMs = r.notAfter.getTime() - this.now();
      if (ttlMs < 2000) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${pair.src} -> ${pair.dst}: an SVID expires within 2 s`); // prettier-ignore
      // Revoked while the handshake ran: its answer is stale.
      for (const id of [pair.src, pair.dst]) this.checkIdentity(id, false);
      this.handshakes.inc({ result: "success" });
      const ms = Math.round(performance.now() - t0);
      // The held packet goes now; the kernel entry and the log lines follow right after this turn
      // (the agent's own netlink socket: auth-table.ts). The pair counts at once (packets queued meanwhile go too).
      const kernel = this.remember(pair, r.notAfter, r.chains);
      const write = async (): Promise<void> => { this.p.logger.info({ source: pair.src, destination: pair.dst, srcNode: pair.srcNode, dstNode: pair.dstNode, via: ph.via, ms }, "pair authenticated"); await kernel(); this.profiles.done(pair.src, pair.dst, ph); }; // prettier-ignore
      setImmediate(() => void write().catch((e: unknown) => this.p.logger.error({ err: (e as Error).message }, "cannot write the authenticated pair"))); // prettier-ignore
      return true;
    } catch (e) {
      this.handshakes.inc({ result: /within \d+ ms/.test((e as Error).message) ? "timeout" : "failure" });
      throw e;
    }
  }

  /** Keeps the pair and writes its kernel entry, until the earlier expiry. */
  async record(pair: Pair, notAfter: Date, chains: Buffer[][]): Promise<void> {
    await this.remember(pair, notAfter, chains)();
  }

  /** Keeps the pair now; the returned function writes its kernel entry (unless it went meanwhile). */
  private remember(pair: Pair, notAfter: Date, chains: Buffer[][]): () => Promise<void> {
    pair.expiresMs = notAfter.getTime();
    pair.chains = chains;
    const k = pairKey(pair);
    this.pairs.set(k, pair);
    return async () => {
      if (this.pairs.get(k) !== pair) return; // revoked or replaced before the write
      await this.p.table.add([pair], Math.floor((pair.expiresMs - this.now()) / 1000));
    };
  }
}
