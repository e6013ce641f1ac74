/**
 * The handshake of one pair, as the AuthManager runs it for a held first packet, a rotation or a
 * prefill:
 *
 *   both ends on this node: handshake.ts in-process (TLS 1.3 over a duplex pair, both SVIDs)
 *   one end on a peer node: peer-handshake.ts with that node's agent on its handshake port
 *   -> the earlier notAfter of the SVIDs involved, and the chains presented (re-checked when the
 *      bundle changes); the SVID serials of this node used (a rotation authenticates again)
 */
import { identitySpiffeId } from "../spiffe/id.js";
import type { X509Svid } from "../spiffe/provider.js";
import { MembraneError } from "../errors.js";
import { localHandshake } from "./handshake.js";
import { clientHandshake } from "./peer-handshake.js";
import type { AuthManager } from "./manager.js";
import type { Pair } from "./pairs.js";

export async function localPair(m: AuthManager, pair: Pair): Promise<{ notAfter: Date; chains: Buffer[][] }> {
  for (const id of [pair.src, pair.dst]) m.checkIdentity(id, true);
  const [a, b] = await Promise.all([m.p.provider.ensure(pair.src), m.p.provider.ensure(pair.dst)]);
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
  pair.serials = new Map([[a.identity, a.serial], [b.identity, b.serial]]); // prettier-ignore
  return { notAfter: r.notAfter, chains: [[...a.chain], [...b.chain]] };
}

/** This node holds the `mine` end ("s" source, "d" destination); the other end's node answers. */
export async function remotePair(
  m: AuthManager,
  pair: Pair,
  mine: "s" | "d",
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
  const bundle = m.p.provider.bundle();
  const socket = await net.connect(addr.host, addr.port, timeoutMs).catch((e: unknown) => {
    throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${pair.src} -> ${pair.dst}: cannot reach node ${peer} at ${addr.host}:${addr.port}: ${(e as Error).message}`); // prettier-ignore
  });
  const r = await clientHandshake({
    socket,
    role: { src: pair.src, dst: pair.dst, serverSide: mine === "s" ? "d" : "s" },
    context: m.contexts.get(svid.serial, { chain: svid.chain, key: () => svid.privateKeyPkcs8() }, bundle, m.p.provider.bundleRevision), // prettier-ignore
    expectPeer: identitySpiffeId(m.p.provider.trustDomain, remoteId),
    bundle,
    trustDomain: m.p.provider.trustDomain,
    timeoutMs,
    cache: m.verified,
  });
  pair.serials = new Map([[localId, svid.serial]]);
  const notAfter = r.notAfter < svid.notAfter ? r.notAfter : svid.notAfter;
  return { notAfter, chains: [r.chain] };
}
