/**
 * What every encryption mode offers the agent (wireguard.ts, ipsec/ipsec.ts, mtls/agent.ts): the same wiring
 * (start before the first rule, publish a record, follow the registry), the same flow bit and the
 * same status shape, so run.ts, the API and `membrane encryption status` do not care which runs.
 *
 *   start() ──▶ record() ──▶ node registry        attach(view) ──▶ peers reconciled
 *   encrypts(ip) ──▶ flows' IP.encrypted           status() ──▶ GET /v1/encryption
 */
import type { NodeEncryptionV1 } from "../cluster/keys.js";
import type { NodeView } from "../cluster/node-view.js";
import type { EncryptionMode, EncryptionStatus } from "./status.js";
import { containsPrefix, parseAddr, type Prefix } from "../labels/cidr.js";

export type { EncryptionMode, EncryptionStatus, PeerStatus, SaStatus } from "./status.js";

export interface EncryptionAgent {
  readonly mode: EncryptionMode;
  /** The tunnel interface peers' pod CIDRs are routed through ("" for the mTLS tunnel: a redirect, no interface). */
  readonly ifname: string;
  start(): Promise<void>;
  record(): NodeEncryptionV1;
  /** Peers follow `view`; `publish` puts this node's record again (a key rotation announces its next key). */
  attach(view: NodeView, publish?: (e: NodeEncryptionV1) => Promise<void>): Promise<void>;
  /** Rotates this node's key now (WireGuard, rotation.ts); absent: the mode rekeys by itself (IPsec). */
  rotateKey?(): Promise<unknown>;
  /**
   * Whether traffic with `ip` goes through the tunnel: flows' IP.encrypted. `tcp`: the flow is
   * TCP (the mTLS tunnel carries TCP only; WireGuard and IPsec ignore it); `identity`: the peer's
   * (the mTLS tunnel delivers from the node's own pod gateway address under the source's identity).
   */
  encrypts(ip: string, tcp?: boolean, identity?: number): boolean;
  /**
   * The mTLS tunnel's receiving side: the source pod (address, identity) of the connection its
   * tunnel opened from local `port` to `destination`:`destinationPort`, so flows name it.
   */
  originOf?(
    destination: string,
    destinationPort: number,
    port: number,
  ): { readonly ip: string; readonly identity: number } | undefined;
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
