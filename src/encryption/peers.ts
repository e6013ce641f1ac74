/**
 * WireGuard peers from the node registry: one peer per live node that
 * publishes a WireGuard key, its allowed IPs = the pod CIDRs it owns, its
 * endpoint = its underlay address and published port.
 *
 *   NodeSnapshot --desiredPeers--> WgPeer[] --planPeers(live)--> `wg set <if> peer K ... [remove]`
 *   `wg show <if> dump` --parseWgDump--> per-peer handshake and transfer (status)
 *
 * Allowed IPs are WireGuard's cryptokey routing both ways: outgoing packets go
 * to the peer whose allowed IPs hold their destination, and a packet arriving
 * through a peer's tunnel from a source outside that peer's allowed IPs is
 * dropped. So a node can only speak for its own pods. Only what differs is
 * set: sessions of unchanged peers are kept. (Not `wg syncconf`: it resets
 * the interface's key and port unless the file holds them.)
 */
import { containsPrefix, parseAddr, prefixString } from "../labels/cidr.js";
import type { NodeSnapshot } from "../cluster/node-view.js";

export interface WgPeer {
  /** The peer's node name. */
  readonly node: string;
  readonly publicKey: string;
  /** `ip:port` (`[ip6]:port`). */
  readonly endpoint: string;
  readonly allowedIps: readonly string[];
  /** The peer's announced next key during its rotation (no allowed IPs: it only answers handshakes). */
  readonly next?: true;
  /** Node-to-node: the peer's node address (also in allowed IPs), routed through the tunnel. */
  readonly nodeAddress?: string;
}

export interface DesiredPeerOptions {
  readonly family?: 4 | 6;
  /** This node's --encryption-node-to-node: peers that also have it get their node address in allowed IPs. */
  readonly nodeToNode?: boolean;
}

export interface WgPeerState {
  readonly publicKey: string;
  readonly endpoint?: string;
  readonly allowedIps: readonly string[];
  /** Unix seconds of the latest handshake; 0 = none yet. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

/**
 * The peers this node wants (itself left out; CIDRs overlapping its own never given to a peer).
 * A peer in the middle of a key rotation (its record has `nextPublicKey`) gets a second entry
 * under that key with no allowed IPs (rotation.ts explains the overlap). With node-to-node on
 * both sides, the peer's node address (/32, /128) is in its allowed IPs too.
 */
export function desiredPeers(s: NodeSnapshot, self: string, o: DesiredPeerOptions = {}): WgPeer[] {
  const family = o.family ?? 4;
  const mine = s.owned.get(self) ?? [];
  const out: WgPeer[] = [];
  for (const [name, r] of s.records) {
    const e = r.record.encryption;
    if (name === self || e?.type !== "wireguard") continue;
    const ip = family === 6 ? r.record.addresses.ipv6 : r.record.addresses.ipv4;
    if (ip === undefined || parseAddr(ip)?.family !== family) continue;
    const cidrs = (s.owned.get(name) ?? []).filter(
      (c) => !mine.some((m) => containsPrefix(m, c) || containsPrefix(c, m)),
    );
    const allowed = cidrs.map(prefixString);
    const n2n = o.nodeToNode === true && e.nodeToNode === true;
    if (n2n) allowed.push(`${ip}/${family === 4 ? 32 : 128}`);
    const endpoint = family === 6 ? `[${ip}]:${e.port}` : `${ip}:${e.port}`;
    out.push({
      node: name,
      publicKey: e.publicKey,
      endpoint,
      allowedIps: allowed.sort(),
      ...(n2n ? { nodeAddress: ip } : {}),
    });
    if (e.nextPublicKey !== undefined && e.nextPublicKey !== e.publicKey)
      out.push({ node: name, publicKey: e.nextPublicKey, endpoint, allowedIps: [], next: true });
  }
  // Two nodes publishing one key would share a peer: keep the first by name, never merge their CIDRs.
  // (A node's current entry sorts before its next one, so a key seen as current wins.)
  const seen = new Set<string>();
  return out
    .sort((a, b) => (a.node !== b.node ? (a.node < b.node ? -1 : 1) : a.next ? 1 : b.next ? -1 : 0))
    .filter((p) => (seen.has(p.publicKey) ? false : (seen.add(p.publicKey), true)));
}

/**
 * The `wg set <if> ...` arguments that take the interface's peers from `live` to `want` (empty:
 * nothing to do). Only what differs is set (`wg set` leaves everything else, the interface's key
 * and port and the sessions of unchanged peers, as it is); peers no node publishes are removed.
 */
export function planPeers(want: readonly WgPeer[], live: readonly WgPeerState[]): string[] {
  const args: string[] = [];
  const now = new Map(live.map((l) => [l.publicKey, l]));
  for (const p of want) {
    const l = now.get(p.publicKey);
    const allowed = [...p.allowedIps].sort().join(",");
    if (l && l.endpoint === p.endpoint && [...l.allowedIps].sort().join(",") === allowed) continue;
    args.push("peer", p.publicKey, "endpoint", p.endpoint, "allowed-ips", allowed);
  }
  // Removals first: a rotated peer's old entry is removed in the same `wg set` that gives its
  // new entry the allowed IPs (one command, so no moment without a peer for them either way).
  const keep = new Set(want.map((p) => p.publicKey));
  const gone: string[] = [];
  for (const l of live) if (!keep.has(l.publicKey)) gone.push("peer", l.publicKey, "remove");
  return [...gone, ...args];
}

/**
 * Reads `wg show <if> dump`: its first line (the interface, with the private key) is
 * dropped unread; then one tab-separated line per peer.
 */
export function parseWgDump(text: string): WgPeerState[] {
  const out: WgPeerState[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.split("\t");
    if (f.length < 8) continue;
    const [publicKey = "", , endpoint = "", allowed = "", hs = "0", rx = "0", tx = "0"] = f;
    out.push({
      publicKey,
      ...(endpoint !== "(none)" ? { endpoint } : {}),
      allowedIps: allowed === "(none)" ? [] : allowed.split(",").filter((a) => a !== ""),
      latestHandshake: Number(hs) || 0,
      rxBytes: Number(rx) || 0,
      txBytes: Number(tx) || 0,
    });
  }
  return out;
}
