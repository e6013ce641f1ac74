/**
 * Pooled connections to the agents of peer nodes: one TLS 1.3 connection per peer node, opened
 * ahead (when the node appears) and kept; each pair's authentication is then one request and one
 * answer on it, not a TCP connection and a TLS handshake per pair.
 *
 *   initiator (this node)                              responder (peer node, channel-server.ts)
 *     TCP + TLS 1.3, SNI node.auth.membrane,   <-->     node certificates both ways (node-cert.ts):
 *     each checks the other's node certificate          each signed by a root the OTHER node's record
 *     exporter = TLS exporter of the connection         publishes, naming that node
 *     {pair, id, src, dst, side, nonce, chain, sig} --> chain validated (SPIFFE rules, expected
 *                                                       identity), signature by that SVID's key
 *     validates the answer the same way         <--     {ok, chain, sig} of its end | {no, why}
 *
 * What a pair's authentication proves is unchanged (pair-proof.ts): each agent holds the private
 * key of its end's SVID, now bound to the connection by the exporter instead of by a handshake.
 * A connection lives until either node certificate expires, the bundle changes, or it fails; a
 * request on a connection that turns out dead is tried once more on a new one.
 */
import { randomBytes } from "node:crypto";
import * as tls from "node:tls";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import type { PeerNet } from "./peer-net.js";
import type { AuthNodes } from "./pairs.js";
import type { X509Svid } from "../spiffe/provider.js";
import type { SvidValidationCache } from "../spiffe/validate-cache.js";
import { peerChain } from "./handshake.js";
import { checkNodeChain, type NodeCredential } from "./node-cert.js";
import { encodeFrame, FrameReader, parseAnswer, type PairAnswer } from "./channel-wire.js";
import { CHANNEL_ALPN, exporterOf, Possession, signRequest, verifyResponse, type PairClaim, type SigningKeys } from "./pair-proof.js"; // prettier-ignore
import type { Phases } from "./timing.js";

/** The server name of a pooled connection (a per-pair handshake names its pair instead). */
export const CHANNEL_SNI = "node.auth.membrane";
/** Requests waiting for an answer on one connection; more fail at once. */
const MAX_WAITING = 256;

const refused = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${why}`);

export interface ChannelDeps {
  readonly nodes: () => AuthNodes;
  readonly net: () => PeerNet | undefined;
  readonly credential: NodeCredential;
  readonly trustDomain: string;
  readonly cache: SvidValidationCache;
  readonly keys: SigningKeys;
  readonly logger: Logger;
}

class Channel {
  private nextId = 1;
  private readonly waiting = new Map<number, (a: PairAnswer | Error) => void>();
  closed = false;
  readonly since = Date.now();
  requests = 0;
  /** Protocol v2 (ALPN): proofs once per (connection, SVID), pair-proof.ts. */
  readonly v2: boolean;
  /** Our leaves whose proof the peer accepted (an "ok" to a signed request): sent unsigned since. */
  readonly shown = new Possession();
  /** The peer's leaves whose proof we verified: accepted unsigned since. */
  readonly proven = new Possession();

  constructor(
    readonly peer: string,
    readonly host: string,
    readonly s: tls.TLSSocket,
    readonly exporter: Buffer,
    lifeMs: number,
    onClose: () => void,
  ) {
    this.v2 = s.alpnProtocol === CHANNEL_ALPN;
    const reader = new FrameReader();
    const end = (why: string): void => {
      if (this.closed) return;
      this.closed = true;
      clearTimeout(life);
      for (const w of this.waiting.values()) w(refused(`the pooled connection to node ${peer} ${why}`));
      this.waiting.clear();
      s.destroy();
      onClose();
    };
    const life = setTimeout(() => end("reached the end of its certificates"), Math.max(1000, lifeMs));
    life.unref();
    s.on("data", (d: Buffer) => {
      try {
        for (const body of reader.push(d)) {
          const a = parseAnswer(body);
          const w = this.waiting.get(a.id);
          if (!w) throw refused(`node ${peer} answered request ${a.id}, which was not asked`);
          this.waiting.delete(a.id);
          w(a);
        }
      } catch (e) {
        end(`sent a malformed answer: ${(e as Error).message}`);
      }
    });
    s.on("error", (e) => end(`failed: ${e.message}`));
    s.on("close", () => end("closed"));
    this.close = () => end("was closed by this agent");
  }

  readonly close: () => void;

  claim(src: number, dst: number, side: "s" | "d"): PairClaim {
    return { id: this.nextId++, src, dst, side, nonce: randomBytes(32).toString("base64") };
  }

  call(req: Parameters<typeof encodeFrame>[0], timeoutMs: number): Promise<PairAnswer> {
    if (this.closed) return Promise.reject(refused(`the pooled connection to node ${this.peer} is closed`));
    if (this.waiting.size >= MAX_WAITING) return Promise.reject(refused(`${MAX_WAITING} requests already wait on node ${this.peer}`)); // prettier-ignore
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(req.id);
        reject(refused(`node ${this.peer} gave no answer within ${timeoutMs} ms`));
        this.close(); // a peer that answers nothing is taken for dead: the next pair opens a new connection
      }, timeoutMs);
      this.waiting.set(req.id, (a) => {
        clearTimeout(t);
        if (a instanceof Error) reject(a);
        else resolve(a);
      });
      this.requests++;
      this.s.write(encodeFrame(req));
    });
  }
}

export interface ChannelResult {
  readonly notAfter: Date;
  /** The chain the peer presented for its end. */
  readonly chain: Buffer[];
}

export class PeerChannels {
  private readonly open = new Map<string, Channel>();
  private readonly connecting = new Map<string, Promise<Channel>>();
  readonly stats = { connects: 0, requests: 0, unsigned: 0, failures: 0, retries: 0 };
  /** What this node's responder served on pooled connections of peers (responder.ts counts). */
  readonly served = { channels: 0, requests: 0, unsigned: 0, accepted: 0, refused: 0 };

  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private warmed: () => readonly string[] = () => [];
  /** Offer protocol v2 (a proof once per connection and SVID); off: v1, every pair signed (a comparison). */
  proofOnce = true;

  constructor(private readonly d: ChannelDeps) {}

  /** Switches the protocol new connections offer; the open ones are closed and opened again. */
  setProofOnce(on: boolean): void {
    if (on === this.proofOnce) return;
    this.proofOnce = on;
    this.closeAll();
    this.warm(this.warmed());
  }

  /** Opens missing connections to `peers()` now and every `everyMs` (one that failed is tried again). */
  startWarming(peers: () => readonly string[], everyMs = 5000): void {
    this.warmed = peers;
    const run = (): void => this.warm(peers());
    run();
    this.timer = setInterval(run, everyMs);
    this.timer.unref();
  }

  /** Closes every connection; no new one is opened. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.closeAll();
  }

  /** Authenticates this node's end (`svid`) of a pair with `peer`'s agent; resolves with its end's notAfter and chain. */
  async authenticate(
    peer: string,
    r: { src: number; dst: number; side: "s" | "d" },
    svid: X509Svid,
    expect: string,
    timeoutMs: number,
    ph?: Phases,
  ): Promise<ChannelResult> {
    // prettier-ignore
    const end = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      const { ch, reused } = await this.channel(peer, Math.max(1, end - Date.now()));
      if (ph) ph.reused = reused;
      ph?.mark("connected");
      try {
        return await this.ask(ch, r, svid, expect, Math.max(1, end - Date.now()), ph);
      } catch (e) {
        // The connection ended under the request (the peer agent restarted, the bundle changed):
        // once more on a new one. An answer "no" leaves the connection open and is final.
        if (attempt > 1 || !ch.closed || end - Date.now() < 50) throw e;
        this.stats.retries++;
      }
    }
  }

  private async ask(
    ch: Channel,
    r: { src: number; dst: number; side: "s" | "d" },
    svid: X509Svid,
    expect: string,
    timeoutMs: number,
    ph?: Phases,
  ): Promise<ChannelResult> {
    // prettier-ignore
    const claim = ch.claim(r.src, r.dst, r.side);
    const leaf = svid.chain[0] as Buffer;
    // Protocol v2: our leaf's key proven on this connection already (pair-proof.ts) -> no signature.
    const sig = ch.v2 && ch.shown.has(leaf) ? undefined : signRequest(this.d.keys.get(svid.serial, () => svid.privateKeyPkcs8()), ch.exporter, claim); // prettier-ignore
    this.stats.requests++;
    if (sig === undefined) this.stats.unsigned++;
    const req = { t: "pair" as const, ...claim, chain: [...svid.chain] };
    const a = await ch.call(sig ? { ...req, sig } : req, timeoutMs);
    ph?.mark("answered");
    if (a.t === "no") {
      this.stats.failures++;
      throw refused(`node ${ch.peer} refused it: ${a.why}`);
    }
    const roots = this.d.nodes().rootsOf(ch.peer);
    let v;
    const missed = this.d.cache.stats.misses;
    try {
      v = this.d.cache.validate(a.chain, roots, { trustDomain: this.d.trustDomain, now: Date.now() });
    } catch (e) {
      throw refused(`node ${ch.peer}'s certificate is refused: ${(e as Error).message}`);
    } finally {
      if (ph) ph.misses += this.d.cache.stats.misses - missed;
    }
    const theirs = a.chain[0] as Buffer;
    if (ph) ph.signed = a.sig !== undefined;
    if (a.sig) {
      verifyResponse(v.leafKey, ch.exporter, claim, sig, a.sig);
      if (ch.v2) ch.proven.add(theirs);
    } else if (!ch.v2 || !ch.proven.has(theirs)) {
      // Only an SVID proven on this connection may be presented without a signature: the peer
      // broke the protocol (or we refused its proof): a new connection starts with no proofs.
      ch.close();
      throw refused(`node ${ch.peer} presented an SVID without a proof of its key on this connection`);
    }
    if (v.id.uri !== expect) throw refused(`node ${ch.peer} presented ${v.id.uri}, not ${expect}`);
    if (sig && ch.v2) ch.shown.add(leaf); // an "ok" to a signed request: the peer verified it
    ph?.mark("validated");
    return { notAfter: v.notAfter, chain: [...a.chain] };
  }

  /** Opens the connections to `peers` that are not open (in the background; failures wait for the next use). */
  warm(peers: readonly string[]): void {
    if (this.stopped) return;
    for (const p of peers)
      if (!this.open.has(p) && !this.connecting.has(p))
        this.channel(p, 5000).catch((e: unknown) => this.d.logger.debug({ node: p, err: (e as Error).message }, "cannot open a pooled connection yet")); // prettier-ignore
  }

  /** Closes every connection (a bundle change: they are opened again with what is trusted now). */
  closeAll(): void {
    for (const c of [...this.open.values()]) c.close();
  }

  view(): { node: string; host: string; since: string; requests: number; protocol: "v1" | "v2" }[] {
    return [...this.open.values()].map((c) => ({ node: c.peer, host: c.host, since: new Date(c.since).toISOString(), requests: c.requests, protocol: c.v2 ? "v2" : "v1" })); // prettier-ignore
  }

  private async channel(peer: string, timeoutMs: number): Promise<{ ch: Channel; reused: boolean }> {
    const addr = this.d.nodes().peerAddress(peer);
    const have = this.open.get(peer);
    if (have && !have.closed && have.host === addr?.host) return { ch: have, reused: true };
    have?.close();
    let p = this.connecting.get(peer);
    if (!p) {
      p = this.connect(peer, timeoutMs).finally(() => this.connecting.delete(peer));
      this.connecting.set(peer, p);
    }
    return { ch: await p, reused: false };
  }

  private async connect(peer: string, timeoutMs: number): Promise<Channel> {
    if (this.stopped) throw refused("mutual authentication is stopping");
    const addr = this.d.nodes().peerAddress(peer);
    const net = this.d.net();
    if (!addr || !net) throw refused(`node ${peer} publishes no handshake port`);
    const own = await this.d.credential.context();
    const sock = await net.connect(addr.host, addr.port, timeoutMs).catch((e: unknown) => {
      throw refused(`cannot reach node ${peer} at ${addr.host}:${addr.port}: ${(e as Error).message}`);
    });
    this.stats.connects++;
    sock.setKeepAlive(true, 5000);
    sock.setNoDelay(true);
    const s = tls.connect({
      socket: sock,
      secureContext: own.ctx,
      servername: CHANNEL_SNI,
      ...(this.proofOnce ? { ALPNProtocols: [CHANNEL_ALPN] } : {}), // a v1 peer ignores it: every message is then signed
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
      checkServerIdentity: () => undefined, // a node certificate names a SPIFFE ID: checkNodeChain checks it
    });
    const ch = await new Promise<Channel>((resolve, reject) => {
      const t = setTimeout(() => fail(refused(`no TLS connection to node ${peer} within ${timeoutMs} ms`)), timeoutMs); // prettier-ignore
      function fail(e: Error): void {
        clearTimeout(t);
        s.destroy();
        reject(e);
      }
      s.once("error", (e) => fail(refused(`the pooled connection to node ${peer} failed: ${e.message}`)));
      s.once("secureConnect", () => {
        clearTimeout(t);
        try {
          const nodes = this.d.nodes();
          const peerNa = checkNodeChain(peerChain(s), peer, nodes.rootsOf(peer), this.d.trustDomain, this.d.cache); // prettier-ignore
          const exporter = exporterOf(s);
          s.removeAllListeners("error");
          const c: Channel = new Channel(peer, addr.host, s, exporter, Math.min(peerNa, own.notAfter) - Date.now(), () => this.open.get(peer) === c && this.open.delete(peer)); // prettier-ignore
          resolve(c);
        } catch (e) {
          fail(e as Error);
        }
      });
    });
    this.open.set(peer, ch);
    this.d.logger.info({ node: peer, host: addr.host }, "pooled authentication connection open");
    return ch;
  }
}
