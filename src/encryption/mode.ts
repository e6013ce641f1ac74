/**
 * What every encryption mode offers the agent (wireguard.ts, ipsec/ipsec.ts): the same wiring
 * (start before the first rule, publish a record, follow the registry), the same flow bit and the
 * same status shape, so run.ts, the API and `membrane encryption status` do not care which runs.
 *
 *   start() ──▶ record() ──▶ node registry        attach(view) ──▶ peers reconciled
 *   encrypts(ip) ──▶ flows' IP.encrypted           status() ──▶ GET /v1/encryption
 */
import type { NodeEncryptionV1 } from "../cluster/keys.js";
import type { NodeView } from "../cluster/node-view.js";
import { containsPrefix, parseAddr, type Prefix } from "../labels/cidr.js";

export type EncryptionMode = "wireguard" | "ipsec";

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
  readonly publicKey: string;
  readonly endpoint: string;
  readonly allowedIps: readonly string[];
  /** ISO time of the peer's key (from its registry entry). */
  readonly keyCreatedAt?: string;
  /** ISO time of the latest handshake (WireGuard) or of the IKE SA's establishment (IPsec); absent = none. */
  readonly lastHandshake?: string;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** IPsec: the IKE SA's state (ESTABLISHED, CONNECTING, ...; absent = none). */
  readonly ikeState?: string;
  /** IPsec: its CHILD_SAs (two while a rekey overlaps). */
  readonly sas?: readonly SaStatus[];
}

export interface EncryptionStatus {
  readonly mode: EncryptionMode;
  readonly strict: boolean;
  readonly strictCidrs?: readonly string[];
  readonly interface: string;
  /** kernel | wireguard-go | kernel-libipsec | starting */
  readonly impl: string;
  readonly port: number;
  readonly publicKey: string;
  readonly keyCreatedAt: string;
  readonly keyAgeSeconds: number;
  readonly peers: readonly PeerStatus[];
  readonly lastError?: string;
}

export interface EncryptionAgent {
  readonly mode: EncryptionMode;
  /** The tunnel interface peers' pod CIDRs are routed through. */
  readonly ifname: string;
  start(): Promise<void>;
  record(): NodeEncryptionV1;
  attach(view: NodeView): Promise<void>;
  /** Whether traffic with `ip` goes through the tunnel: flows' IP.encrypted. */
  encrypts(ip: string): boolean;
  status(): Promise<EncryptionStatus>;
  /** Stops reconciling; the tunnel and the strict table stay (the kernel keeps encrypting). */
  stop(): Promise<void>;
}

/** Whether `ip` is inside one of `prefixes`. */
export function inPrefixes(prefixes: readonly Prefix[], ip: string): boolean {
  const a = parseAddr(ip);
  if (!a) return false;
  const host: Prefix = { family: a.family, addr: a.value, bits: a.family === 4 ? 32 : 128 };
  return prefixes.some((p) => containsPrefix(p, host));
}
