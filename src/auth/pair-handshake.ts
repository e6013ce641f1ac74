/**
 * The handshake of one pair, as the AuthManager runs it for a held first packet, a rotation or a
 * prefill:
 *
 *   transport "channel" (the default):
 *     both ends on this node: both SVIDs validated against the bundle, each key proven by a
 *       signature (pair-proof.ts) in-process, once per SVID: the same agent holds both, a TLS
 *       handshake with itself would prove nothing more
 *     one end on a peer node: a request on the pooled connection to its agent (channel.ts)
 *   transport "per-pair":
 *     both ends on this node: handshake.ts in-process (TLS 1.3 over a duplex pair, both SVIDs)
 *     one end on a peer node: peer-handshake.ts, a TCP connection and TLS 1.3 handshake per pair
 *   -> the earlier notAfter of the SVIDs involved, and the chains presented (re-checked when the
 *      bundle changes); the SVID serials of this node used (a rotation authenticates again)
 */
import { randomBytes, type KeyObject } from "node:crypto";
import { identitySpiffeId } from "../spiffe/id.js";
import type { X509Svid } from "../spiffe/provider.js";
import { MembraneError } from "../errors.js";
import { localHandshake } from "./handshake.js";
import { clientHandshake } from "./peer-handshake.js";
import type { AuthManager } from "./manager.js";
import type { Pair } from "./pairs.js";
import type { Phases } from "./timing.js";
import { signRequest, signResponse, verifyRequest, verifyResponse } from "./pair-proof.js";

const refused = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${why}`);

/**
 * Both ends here: each SVID validated against the bundle and its key proven by a signature, once
 * per SVID (serial): the same agent holds both keys, and a serial's key and certificate never
 * change (a rotation is a new serial, proven again), so a second proof would show nothing new.
 */
function localProof(m: AuthManager, a: X509Svid, b: X509Svid): Date {
  const bundle = m.p.provider.bundle();
  const o = { trustDomain: m.p.provider.trustDomain, now: Date.now() };
  let notAfter = new Date(8.64e15);
  const keys: KeyObject[] = [];
  for (const s of [a, b]) {
    let v;
    try {
      v = m.verified.validate(s.chain, bundle, o);
    } catch (e) {
      throw refused(`the SVID of identity ${s.identity} is refused: ${(e as Error).message}`);
    }
    if (v.id.uri !== s.spiffeId) throw refused(`the SVID of identity ${s.identity} names ${v.id.uri}`);
    if (v.notAfter < notAfter) notAfter = v.notAfter;
    keys.push(v.leafKey);
  }
  if (m.keys.proven.has(a.serial) && m.keys.proven.has(b.serial)) return notAfter;
  const binding = randomBytes(32);
  const claim = { id: 1, src: a.identity, dst: b.identity, side: "d" as const, nonce: randomBytes(32).toString("base64") }; // prettier-ignore
  const sig = signRequest(
    m.keys.get(a.serial, () => a.privateKeyPkcs8()),
    binding,
    claim,
  );
  verifyRequest(keys[0] as KeyObject, binding, claim, sig);
  const rsig = signResponse(
    m.keys.get(b.serial, () => b.privateKeyPkcs8()),
    binding,
    claim,
    sig,
  );
  verifyResponse(keys[1] as KeyObject, binding, claim, sig, rsig);
  m.keys.proven.add(a.serial).add(b.serial);
  return notAfter;
}

export async function localPair(
  m: AuthManager,
  pair: Pair,
  ph?: Phases,
): Promise<{ notAfter: Date; chains: Buffer[][] }> {
  // prettier-ignore
  for (const id of [pair.src, pair.dst]) m.checkIdentity(id, true);
  const [a, b] = await Promise.all([m.p.provider.ensure(pair.src), m.p.provider.ensure(pair.dst)]);
  ph?.mark("connected");
  if (m.transport === "channel") {
    if (ph) ph.via = "local";
    const notAfter = localProof(m, a, b);
    ph?.mark("validated");
    pair.serials = new Map([[a.identity, a.serial], [b.identity, b.serial]]); // prettier-ignore
    return { notAfter, chains: [[...a.chain], [...b.chain]] };
  }
  if (ph) ph.via = "local-tls";
  const creds = (s: X509Svid) => ({ chain: s.chain, key: () => s.privateKeyPkcs8() });
  const bundle = m.p.provider.bundle();
  const rev = m.p.provider.bundleRevision;
  const r = await localHandshake({
    contexts: { client: m.contexts.get(a.serial, creds(a), bundle, rev), server: m.contexts.get(b.serial, creds(b), bundle, rev) }, // prettier-ignore
    client: { creds: creds(a), expectPeer: b.spiffeId },
    server: { creds: creds(b), expectPeer: a.spiffeId },
    bundle,
    trustDomain: m.p.provider.trustDomain,
    timeoutMs: m.p.handshakeTimeoutMs ?? 5000,
    cache: m.verified,
  });
  ph?.mark("validated");
  pair.serials = new Map([[a.identity, a.serial], [b.identity, b.serial]]); // prettier-ignore
  return { notAfter: r.notAfter, chains: [[...a.chain], [...b.chain]] };
}

/** This node holds the `mine` end ("s" source, "d" destination); the other end's node answers. */
export async function remotePair(
  m: AuthManager,
  pair: Pair,
  mine: "s" | "d",
  ph?: Phases,
): Promise<{ notAfter: Date; chains: Buffer[][] }> {
  const [localId, remoteId] = mine === "s" ? [pair.src, pair.dst] : [pair.dst, pair.src];
  const peer = (mine === "s" ? pair.dstNode : pair.srcNode) as string;
  m.checkIdentity(localId, true);
  m.checkIdentity(remoteId, false);
  const addr = m.nodes.peerAddress(peer);
  const net = m.net;
  if (!addr || !net) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${pair.src} -> ${pair.dst}: node ${peer} publishes no handshake port`); // prettier-ignore
  const svid = await m.p.provider.ensure(localId);
  const timeoutMs = m.p.handshakeTimeoutMs ?? 5000;
  const expectPeer = identitySpiffeId(m.p.provider.trustDomain, remoteId);
  if (m.transport === "channel" && m.channels) {
    if (ph) ph.via = "channel";
    const role = { src: pair.src, dst: pair.dst, side: mine === "s" ? ("d" as const) : ("s" as const) };
    const r = await m.channels.authenticate(peer, role, svid, expectPeer, timeoutMs, ph);
    pair.serials = new Map([[localId, svid.serial]]);
    return { notAfter: r.notAfter < svid.notAfter ? r.notAfter : svid.notAfter, chains: [r.chain] };
  }
  if (ph) ph.via = "tls";
  const bundle = m.p.provider.bundle();
  const socket = await net.connect(addr.host, addr.port, timeoutMs).catch((e: unknown) => {
    throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${pair.src} -> ${pair.dst}: cannot reach node ${peer} at ${addr.host}:${addr.port}: ${(e as Error).message}`); // prettier-ignore
  });
  ph?.mark("connected");
  const r = await clientHandshake({
    socket,
    role: { src: pair.src, dst: pair.dst, serverSide: mine === "s" ? "d" : "s" },
    context: m.contexts.get(svid.serial, { chain: svid.chain, key: () => svid.privateKeyPkcs8() }, bundle, m.p.provider.bundleRevision), // prettier-ignore
    expectPeer,
    bundle,
    trustDomain: m.p.provider.trustDomain,
    timeoutMs,
    cache: m.verified,
  });
  ph?.mark("validated");
  pair.serials = new Map([[localId, svid.serial]]);
  const notAfter = r.notAfter < svid.notAfter ? r.notAfter : svid.notAfter;
  return { notAfter, chains: [r.chain] };
}
