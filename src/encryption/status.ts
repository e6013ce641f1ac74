/**
 * What `membrane encryption status` (GET /v1/encryption, and `encryption` in GET /v1/status)
 * shows: this node's mode, strict mode, key age and rotation, and per peer its mode, key age,
 * last handshake and whether strict mode covers it. Public keys (or root fingerprints) only.
 *
 *   WgPeer[] (desired) + `wg show dump` (live) + peers' registry entries ──buildStatus──▶ EncryptionStatus
 */
import type { NodeRecordV1 } from "../cluster/keys.js";
import type { WgPeer, WgPeerState } from "./peers.js";

export type EncryptionMode = "wireguard" | "ipsec" | "mtls-tunnel";

/** One IPsec CHILD_SA of a peer (status). */
export interface SaStatus {
  readonly state: string;
  readonly spiIn: string;
  readonly spiOut: string;
  readonly encryption: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly installedSeconds: number;
  readonly rekeyInSeconds?: number;
}

export interface PeerStatus {
  readonly node: string;
  /** `wireguard`, `wireguard (next key)` for the entry of a peer's announced next key, or `ipsec`. */
  readonly mode: string;
  /** Whether this node drops traffic to the peer's pods that would leave unencrypted. */
  readonly strict: boolean;
  /** Whether the peer's node address is in its allowed IPs (node-to-node on both sides). */
  readonly nodeToNode: boolean;
  /** Seconds since the peer made its key (from its registry entry). */
  readonly keyAgeSeconds?: number;
  /** ISO time of the peer's key (from its registry entry). */
  readonly keyCreatedAt?: string;
  /** `ok`: a handshake within WireGuard's 3 minutes (sessions rekey every 2); `stale`; `never`. */
  readonly handshake: "ok" | "stale" | "never";
  /** ISO time of the latest handshake (WireGuard) or of the IKE SA's establishment (IPsec); absent = none yet. */
  readonly lastHandshake?: string;
  /** An entry for the peer's announced next key (it is rotating; no allowed IPs yet). */
  readonly next?: true;
  /** IPsec: the peer's announced next key, pinned beside publicKey while it rotates. */
  readonly nextPublicKey?: string;
  readonly publicKey: string;
  readonly endpoint: string;
  readonly allowedIps: readonly string[];
  readonly rxBytes: number;
  readonly txBytes: number;
  /** IPsec: the IKE SA's state (ESTABLISHED, CONNECTING, ...; absent = none). */
  readonly ikeState?: string;
  /** IPsec: its CHILD_SAs (two while a rekey overlaps). */
  readonly sas?: readonly SaStatus[];
  /** mTLS tunnel: HTTP/2 sessions, streams and inbound connections with the peer. */
  readonly tunnel?: TunnelPeerCounters;
  /** mTLS tunnel: the last error talking to the peer. */
  readonly lastError?: string;
}

/** The mTLS tunnel's counters of one peer (mtls/wire.ts PeerStats). */
export interface TunnelPeerCounters {
  /** Open HTTP/2 sessions to the peer (one per source identity). */
  readonly sessions: number;
  /** Streams (carried connections) opened to it, and open now. */
  readonly streamsTotal: number;
  readonly streamsOpen: number;
  /** Connections the peer sent us, accepted and refused. */
  readonly inboundAccepted: number;
  readonly inboundRefused: number;
}

/** The mTLS tunnel's own process (mode "mtls-tunnel"). */
export interface TunnelProcessStatus {
  readonly trustDomain: string;
  /** Where this node's pods' redirected connections arrive. */
  readonly redirectPort: number;
  /** The tunnel process, when it runs. */
  readonly pid?: number;
}

export interface RotationStatus {
  /** --encryption-key-rotation in seconds; absent = only on request. */
  readonly intervalSeconds?: number;
  /** When the periodic rotation is due. */
  readonly nextAt?: string;
  /** A rotation between its announce and its switch: the next public key. */
  readonly nextPublicKey?: string;
  readonly rotations: number;
  readonly lastError?: string;
}

export interface EncryptionStatus {
  readonly mode: EncryptionMode;
  readonly strict: boolean;
  readonly strictCidrs?: readonly string[];
  /** --encryption-node-to-node. */
  readonly nodeToNode: boolean;
  readonly interface: string;
  /** kernel | wireguard-go | kernel-libipsec | hbone | starting */
  readonly impl: string;
  readonly port: number;
  readonly publicKey: string;
  readonly keyCreatedAt: string;
  readonly keyAgeSeconds: number;
  /** The node key's rotation (rotation.ts; IPsec: rekey-auth.ts; its SAs rekey by themselves, see each peer's `sas`). */
  readonly rotation?: RotationStatus;
  readonly peers: readonly PeerStatus[];
  /** mTLS tunnel: its process (publicKey is then the SHA-256 fingerprint of the node's newest CA root). */
  readonly tunnel?: TunnelProcessStatus;
  readonly lastError?: string;
}

/** WireGuard's REJECT_AFTER_TIME: a session older than this carries nothing. */
const SESSION_SECONDS = 180;

const ageOf = (iso: string, now: number): number => Math.max(0, Math.round((now - Date.parse(iso)) / 1000));

export type StatusBase = Omit<EncryptionStatus, "peers" | "keyAgeSeconds">;

export function buildStatus(
  base: StatusBase,
  peers: readonly WgPeer[],
  live: readonly WgPeerState[],
  records: ReadonlyMap<string, { readonly record: NodeRecordV1 }> | undefined,
  now = Date.now(),
): EncryptionStatus {
  return {
    ...base,
    keyAgeSeconds: ageOf(base.keyCreatedAt, now),
    peers: peers.map((p): PeerStatus => {
      const l = live.find((x) => x.publicKey === p.publicKey);
      const kc = p.next ? undefined : records?.get(p.node)?.record.encryption?.keyCreatedAt;
      const hs = l && l.latestHandshake > 0 ? l.latestHandshake * 1000 : undefined;
      return {
        node: p.node,
        mode: p.next ? "wireguard (next key)" : "wireguard",
        strict: base.strict,
        nodeToNode: p.nodeAddress !== undefined,
        ...(kc ? { keyCreatedAt: kc, keyAgeSeconds: ageOf(kc, now) } : {}),
        handshake: hs === undefined ? "never" : now - hs <= SESSION_SECONDS * 1000 ? "ok" : "stale",
        ...(hs !== undefined ? { lastHandshake: new Date(hs).toISOString() } : {}),
        ...(p.next ? { next: true as const } : {}),
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIps: l?.allowedIps ?? [],
        rxBytes: l?.rxBytes ?? 0,
        txBytes: l?.txBytes ?? 0,
      };
    }),
  };
}
