/**
 * Encryption flags of `membrane agent` -> EncryptionOptions, with errors naming the flag.
 *
 *   --encryption disabled|wireguard|mtls-tunnel   --encryption-strict   --encryption-strict-cidr CIDR[,CIDR]
 *   --wireguard-port 51871
 *   --mtls-tunnel-port 15008 (HBONE's)   --mtls-tunnel-redirect-port 15006
 *   --mtls-tunnel-gid 1338   --mtls-tunnel-uid 1338
 */
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN } from "../spiffe/id.js";
import { DEFAULT_WG_PORT } from "./wireguard.js";

export interface EncryptionOptions {
  readonly mode: "wireguard" | "mtls-tunnel";
  /** Drop traffic to the strict CIDRs that would leave unencrypted. */
  readonly strict: boolean;
  /** The strict CIDRs (default: the cluster CIDR). */
  readonly strictCidrs?: readonly string[];
  /** WireGuard's UDP port, or the mTLS tunnel's TCP port. */
  readonly port: number;
  /** mtls-tunnel only. */
  readonly tunnel?: MtlsTunnelOptions;
}

export interface MtlsTunnelOptions {
  /** Where the node's pods' redirected connections arrive (on the pod gateway address). */
  readonly redirectPort: number;
  /** The tunnel process's group (the kernel keeps the identity mark of its sockets) and user. */
  readonly gid: number;
  readonly uid: number;
  readonly trustDomain: string;
}

export const DEFAULT_MTLS_PORT = 15008;
export const DEFAULT_MTLS_REDIRECT_PORT = 15006;
export const DEFAULT_MTLS_ID = 1338;

export interface EncryptionFlags {
  readonly encryption?: string;
  readonly encryptionStrict?: boolean;
  readonly encryptionStrictCidr?: string;
  readonly wireguardPort?: string;
  readonly mtlsTunnelPort?: string;
  readonly mtlsTunnelRedirectPort?: string;
  readonly mtlsTunnelGid?: string;
  readonly mtlsTunnelUid?: string;
  readonly trustDomain?: string;
}

function int(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    throw bad(flag, text, `is not a whole number in ${min}..${max}`);
  return n;
}

const bad = (flag: string, value: string, why: string, hint?: string): MembraneError =>
  new MembraneError("ENCRYPTION_INVALID", `Cannot start the agent: ${flag} ${JSON.stringify(value)} ${why}`, {
    ...(hint ? { hint } : {}),
  });

/** undefined = encryption off. */
export function parseEncryptionFlags(
  f: EncryptionFlags,
  clusterMode: boolean,
): EncryptionOptions | undefined {
  const mode = f.encryption ?? "disabled";
  if (mode !== "disabled" && mode !== "wireguard" && mode !== "mtls-tunnel")
    throw bad("--encryption", mode, "is not disabled, wireguard or mtls-tunnel");
  if (mode === "disabled") {
    if (f.encryptionStrict || f.encryptionStrictCidr !== undefined)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        "Cannot start the agent: --encryption-strict needs --encryption wireguard or mtls-tunnel",
      );
    return undefined;
  }
  if (!clusterMode)
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      `Cannot start the agent: --encryption ${mode} encrypts traffic between nodes and needs cluster mode`,
      { hint: "add --cluster-store etcd://HOST:PORT --node-name N --node-ip IP --cluster-cidr CIDR" },
    );
  const tunnel =
    mode === "mtls-tunnel"
      ? {
          redirectPort: int("--mtls-tunnel-redirect-port", f.mtlsTunnelRedirectPort ?? String(DEFAULT_MTLS_REDIRECT_PORT), 1, 65535), // prettier-ignore
          gid: int("--mtls-tunnel-gid", f.mtlsTunnelGid ?? String(DEFAULT_MTLS_ID), 1, 0xfffffffe),
          uid: int("--mtls-tunnel-uid", f.mtlsTunnelUid ?? String(DEFAULT_MTLS_ID), 1, 0xfffffffe),
          trustDomain: checkTrustDomain(f.trustDomain ?? DEFAULT_TRUST_DOMAIN),
        }
      : undefined;
  const portText =
    mode === "mtls-tunnel"
      ? (f.mtlsTunnelPort ?? String(DEFAULT_MTLS_PORT))
      : (f.wireguardPort ?? String(DEFAULT_WG_PORT));
  const portFlag = mode === "mtls-tunnel" ? "--mtls-tunnel-port" : "--wireguard-port";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw bad(portFlag, portText, "is not a port (1-65535)");
  if (tunnel && tunnel.redirectPort === port)
    throw bad("--mtls-tunnel-redirect-port", String(port), "is the same port as --mtls-tunnel-port");
  let strictCidrs: string[] | undefined;
  if (f.encryptionStrictCidr !== undefined) {
    if (!f.encryptionStrict)
      throw bad("--encryption-strict-cidr", f.encryptionStrictCidr, "needs --encryption-strict");
    strictCidrs = f.encryptionStrictCidr.split(",").map((c) => c.trim());
    for (const [i, c] of strictCidrs.entries())
      if (!parsePrefix(c))
        throw bad(
          "--encryption-strict-cidr",
          f.encryptionStrictCidr,
          `has ${JSON.stringify(c)} (item ${i + 1}), not a CIDR`,
        );
  }
  return {
    mode,
    strict: f.encryptionStrict === true,
    ...(strictCidrs ? { strictCidrs } : {}),
    port,
    ...(tunnel ? { tunnel } : {}),
  };
}
