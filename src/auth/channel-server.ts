/**
 * The responder's side of a pooled connection (channel.ts): once its TLS handshake is done, the
 * client node's certificate is checked against the roots that node publishes, then each request
 * authenticates one pair.
 *
 *   request {pair, id, src, dst, side, nonce, chain, sig}
 *     the connection still comes from that node's address; ids only grow; at most MAX_INFLIGHT open
 *     the end this node presents: an identity with an endpoint here, not revoked or reserved
 *     the client's chain: validated against ITS node's roots, names the other end; the signature
 *       (pair-proof.ts) verifies with that leaf's key
 *   --> {ok, chain, sig} (this end's SVID and proof); then this node's kernel entry if its own
 *       policy requires the pair  |  {no, why} (counted, logged; the connection stays)
 *   protocol v2 (ALPN, pair-proof.ts): a request without sig is accepted only for a leaf whose
 *     proof this connection has verified; this end's answer is signed only the first time it
 *     presents its leaf on the connection
 *
 * The answer is written before anything not needed for it: the profile of the request (its
 * "authentication answer profile" log line: each step's ms) and this node's kernel entry follow.
 * A malformed frame, a repeated id, too many requests at once or an unsigned request for a leaf
 * not proven here end the connection.
 */
import type * as tls from "node:tls";
import { MembraneError } from "../errors.js";
import { identitySpiffeId } from "../spiffe/id.js";
import { authRequired } from "./judge.js";
import type { AuthManager } from "./manager.js";
import { peerChain } from "./handshake.js";
import { checkNodeChain } from "./node-cert.js";
import { encodeFrame, FrameReader, parseRequest, type PairRequest } from "./channel-wire.js";
import { CHANNEL_ALPN, exporterOf, Possession, signResponse, verifyRequest } from "./pair-proof.js";
import type { Pair } from "./pairs.js";

const MAX_INFLIGHT = 64;

export interface ChannelServerStats {
  channels: number;
  requests: number;
  /** Requests without a signature (protocol v2: their leaf proven on the connection before). */
  unsigned: number;
  accepted: number;
  refused: number;
}

/** Serves one established pooled connection from node `client` (its address `from`). */
export function serveChannel(
  m: AuthManager,
  s: tls.TLSSocket,
  client: string,
  from: string,
  stats: ChannelServerStats,
): void {
  const log = m.p.logger;
  const td = m.p.provider.trustDomain;
  try {
    checkNodeChain(peerChain(s), client, m.nodes.rootsOf(client), td, m.verified);
  } catch (e) {
    stats.refused++;
    log.warn({ node: client, why: (e as Error).message }, "refused a pooled connection from a peer node");
    s.destroy();
    return;
  }
  stats.channels++;
  const exporter = exporterOf(s);
  const v2 = s.alpnProtocol === CHANNEL_ALPN;
  const conn: Conn = { exporter, v2, proven: new Possession(), shown: new Possession() };
  const reader = new FrameReader();
  let lastId = 0;
  let inflight = 0;
  const end = (why: string): void => {
    if (s.destroyed) return;
    log.warn({ node: client, why }, "closed a pooled connection from a peer node");
    s.destroy();
  };
  s.on("error", () => undefined);
  s.on("data", (d: Buffer) => {
    let reqs: PairRequest[];
    try {
      reqs = reader.push(d).map(parseRequest);
    } catch (e) {
      return end((e as Error).message);
    }
    for (const r of reqs) {
      if (r.id <= lastId) return end(`request id ${r.id} is not above ${lastId}`);
      lastId = r.id;
      if (++inflight > MAX_INFLIGHT) return end(`more than ${MAX_INFLIGHT} requests at once`);
      if (r.sig === undefined && !(v2 && conn.proven.has(r.chain[0] as Buffer)))
        return end(`request ${r.id} carries no proof of an SVID key not proven on this connection`);
      stats.requests++;
      if (r.sig === undefined) stats.unsigned++;
      const t0 = performance.now();
      void answer(m, r, client, from, conn).then(
        (out) => {
          inflight--;
          if (s.destroyed) return;
          // Signed at write time: answers leave in this order, so the first to present a leaf
          // is the one that carries its proof (v2).
          const leaf = out.answer.chain[0] as Buffer;
          const signIt = !v2 || !conn.shown.has(leaf);
          const a = signIt ? { ...out.answer, sig: out.sign() } : out.answer;
          if (signIt && v2) conn.shown.add(leaf);
          s.write(encodeFrame(a));
          const written = performance.now();
          stats.accepted++;
          setImmediate(() => {
            out.after();
            const ms = (t: number): number => Math.round((t - t0) * 100) / 100;
            log.info({ node: client, source: r.src, destination: r.dst, proof: { request: r.sig ? "signed" : "proven", answer: signIt ? "signed" : "proven" }, phases: { checked: ms(out.checked), verified: ms(out.verified), written: ms(written), turn: ms(performance.now()) } }, "authentication answer profile"); // prettier-ignore
          });
        },
        (e: unknown) => {
          inflight--;
          stats.refused++;
          const why = (e as Error).message;
          log.warn({ node: client, why }, "refused a handshake from a peer node");
          if (!s.destroyed) s.write(encodeFrame({ t: "no", id: r.id, why }));
        },
      );
    }
  });
}

/** What one pooled connection remembers (protocol v2: proofs once per SVID, pair-proof.ts). */
interface Conn {
  readonly exporter: Buffer;
  readonly v2: boolean;
  /** The client's leaves whose proof this side verified. */
  readonly proven: Possession;
  /** This side's leaves whose proof went out in an answer. */
  readonly shown: Possession;
}

interface Answer {
  readonly answer: { t: "ok"; id: number; chain: Buffer[] };
  /** This end's proof for the answer (signed only when it goes out: see serveChannel). */
  readonly sign: () => Buffer;
  /** performance.now() once the request's chain was checked, and once its proof was. */
  readonly checked: number;
  readonly verified: number;
  readonly after: () => void;
}

async function answer(
  m: AuthManager,
  r: PairRequest,
  client: string,
  from: string,
  c: Conn,
): Promise<Answer> {
  if (m.nodes.nodeAt(from) !== client) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${from} is no longer node ${client}'s address`); // prettier-ignore
  const mine = r.side === "s" ? r.src : r.dst;
  const theirs = r.side === "s" ? r.dst : r.src;
  m.checkIdentity(mine, true);
  m.checkIdentity(theirs, false);
  const p = m.p.provider;
  let v;
  try {
    v = m.verified.validate(r.chain, m.nodes.rootsOf(client), { trustDomain: p.trustDomain, now: Date.now() }); // prettier-ignore
  } catch (e) {
    throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: the client node's certificate is refused: ${(e as Error).message}`); // prettier-ignore
  }
  const want = identitySpiffeId(p.trustDomain, theirs);
  if (v.id.uri !== want) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: the client node presented ${v.id.uri}, not ${want}`); // prettier-ignore
  const checked = performance.now();
  if (r.sig) {
    verifyRequest(v.leafKey, c.exporter, r, r.sig);
    if (c.v2) c.proven.add(r.chain[0] as Buffer);
  }
  const verified = performance.now();
  const svid = await p.ensure(mine);
  const key = m.keys.get(svid.serial, () => svid.privateKeyPkcs8());
  const notAfter = v.notAfter < svid.notAfter ? v.notAfter : svid.notAfter;
  return {
    answer: { t: "ok", id: r.id, chain: [...svid.chain] },
    sign: () => signResponse(key, c.exporter, r, r.sig),
    checked,
    verified,
    // After the answer: this node's kernel gets the entry only if its own policy requires the pair
    // (an ingress rule of the destination, an egress rule of the source), as responder.ts.
    after: () => {
      const state = m.p.state();
      if (!state || !authRequired(state, r.src, r.dst)) return;
      const self = m.nodes.self;
      const [srcNode, dstNode] = r.side === "s" ? [self, client] : [client, self];
      const n = m.nodes;
      const pair: Pair = { src: r.src, dst: r.dst, srcNode, dstNode, srcNets: n.netsOf(srcNode), dstNets: n.netsOf(dstNode), expiresMs: 0, chains: [[...r.chain]], serials: new Map([[mine, svid.serial]]), srcIps: new Set(), dstIps: new Set() }; // prettier-ignore
      void m.record(pair, notAfter, [[...r.chain]]).catch((e: unknown) => m.p.logger.error({ err: (e as Error).message }, "cannot write the authenticated pair")); // prettier-ignore
    },
  };
}
