/**
 * Encryption flags of `membrane agent` -> EncryptionOptions, with errors naming the flag.
 *
 *   --encryption disabled|wireguard|ipsec|mtls-tunnel   --encryption-strict   --encryption-strict-cidr CIDR[,CIDR]
 *   --wireguard-port 51871   --encryption-node-to-node   --encryption-key-rotation 24h (wireguard, ipsec)
 *   --ipsec-port 51872 (IKE; ESP in UDP on port + 1)   --ipsec-rekey-seconds 3600
 *   --mtls-tunnel-port 15008 (HBONE's)   --mtls-tunnel-redirect-port 15006
 *   --mtls-tunnel-gid 1338   --mtls-tunnel-uid 1338
 */
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN } from "../spiffe/id.js";
import { DEFAULT_WG_PORT } from "./wireguard.js";
import { DEFAULT_IKE_PORT } from "./ipsec/ipsec.js";
import type { EncryptionMode } from "./mode.js";

export interface EncryptionOptions {
  readonly mode: EncryptionMode;
  /** Drop traffic to the strict CIDRs that would leave unencrypted. */
  readonly strict: boolean;
  /** The strict CIDRs (default: the cluster CIDR). */
  readonly strictCidrs?: readonly string[];
  /** The mode's port: WireGuard's UDP, IKE's UDP, or the mTLS tunnel's TCP. */
  readonly port: number;
  /** The node's own traffic to peer nodes goes through the tunnel too. */
  readonly nodeToNode?: boolean;
  /** Rotate the node's key when it is this old (ms); absent = on request only. */
  readonly keyRotationMs?: number;
  /** ipsec: CHILD_SA rekey time, seconds. */
  readonly rekeySeconds?: number;
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
  readonly encryptionNodeToNode?: boolean;
  readonly encryptionKeyRotation?: string;
  readonly ipsecPort?: string;
  readonly ipsecRekeySeconds?: string;
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

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `30m`, `24h`, `7d`, `1h30m` -> ms; `0` -> 0; undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  if (!/^(\d+[smhd])+$/.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+)([smhd])/g)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return ms;
}

/** The shortest periodic rotation: every rotation waits for its announcement to reach the peers. */
const MIN_ROTATION_MS = 60_000;

const bad = (flag: string, value: string, why: string, hint?: string): MembraneError =>
  new MembraneError("ENCRYPTION_INVALID", `Cannot start the agent: ${flag} ${JSON.stringify(value)} ${why}`, {
    ...(hint ? { hint } : {}),
  });

/** The first --mtls-tunnel-* flag given, if any. */
function mtlsFlagGiven(f: EncryptionFlags): string | undefined {
  if (f.mtlsTunnelPort !== undefined) return "--mtls-tunnel-port";
  if (f.mtlsTunnelRedirectPort !== undefined) return "--mtls-tunnel-redirect-port";
  if (f.mtlsTunnelGid !== undefined) return "--mtls-tunnel-gid";
  if (f.mtlsTunnelUid !== undefined) return "--mtls-tunnel-uid";
  return undefined;
}

/** undefined = encryption off. */
export function parseEncryptionFlags(
  f: EncryptionFlags,
  clusterMode: boolean,
): EncryptionOptions | undefined {
  const mode = f.encryption ?? "disabled";
  if (mode !== "disabled" && mode !== "wireguard" && mode !== "ipsec" && mode !== "mtls-tunnel")
    throw bad("--encryption", mode, "is not disabled, wireguard, ipsec or mtls-tunnel");
  if (mode !== "ipsec" && (f.ipsecPort !== undefined || f.ipsecRekeySeconds !== undefined))
    throw new MembraneError("ENCRYPTION_INVALID", "Cannot start the agent: --ipsec-port and --ipsec-rekey-seconds need --encryption ipsec"); // prettier-ignore
  const mtlsFlag = mtlsFlagGiven(f);
  if (mode !== "mtls-tunnel" && mtlsFlag !== undefined)
    throw new MembraneError("ENCRYPTION_INVALID", `Cannot start the agent: ${mtlsFlag} needs --encryption mtls-tunnel`); // prettier-ignore
  if (mode === "disabled") {
    const needs = f.encryptionStrict
      ? "--encryption-strict"
      : f.encryptionStrictCidr !== undefined
        ? "--encryption-strict-cidr"
        : f.encryptionNodeToNode
          ? "--encryption-node-to-node"
          : f.encryptionKeyRotation !== undefined
            ? "--encryption-key-rotation"
            : undefined;
    const modes =
      needs === "--encryption-strict" || needs === "--encryption-strict-cidr"
        ? "wireguard, ipsec or mtls-tunnel"
        : needs === "--encryption-key-rotation"
          ? "wireguard or ipsec"
          : "wireguard";
    if (needs !== undefined)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        `Cannot start the agent: ${needs} needs --encryption ${modes}`,
      );
    return undefined;
  }
  if (mode === "ipsec" && f.encryptionNodeToNode)
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      "Cannot start the agent: --encryption-node-to-node needs --encryption wireguard (IPsec encrypts pod traffic only)",
    );
  if (mode === "mtls-tunnel" && (f.encryptionNodeToNode || f.encryptionKeyRotation !== undefined))
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      `Cannot start the agent: ${f.encryptionNodeToNode ? "--encryption-node-to-node needs --encryption wireguard" : "--encryption-key-rotation needs --encryption wireguard or ipsec"} (the mTLS tunnel carries pod TCP only, and renews its SVIDs by itself)`,
    );
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
  const portFlag = mode === "ipsec" ? "--ipsec-port" : mode === "mtls-tunnel" ? "--mtls-tunnel-port" : "--wireguard-port"; // prettier-ignore
  const portText =
    (mode === "ipsec" ? f.ipsecPort : mode === "mtls-tunnel" ? f.mtlsTunnelPort : f.wireguardPort) ??
    String(
      mode === "ipsec" ? DEFAULT_IKE_PORT : mode === "mtls-tunnel" ? DEFAULT_MTLS_PORT : DEFAULT_WG_PORT,
    );
  const port = Number(portText);
  const top = mode === "ipsec" ? 65534 : 65535; // ipsec: ESP in UDP on port + 1
  if (!/^\d+$/.test(portText) || port < 1 || port > top)
    throw bad(portFlag, portText, `is not a port (1-${top})`);
  if (tunnel && tunnel.redirectPort === port)
    throw bad("--mtls-tunnel-redirect-port", String(port), "is the same port as --mtls-tunnel-port");
  let rekeySeconds: number | undefined;
  if (f.ipsecRekeySeconds !== undefined) {
    rekeySeconds = Number(f.ipsecRekeySeconds);
    if (!/^\d+$/.test(f.ipsecRekeySeconds) || rekeySeconds < 10 || rekeySeconds > 86400)
      throw bad("--ipsec-rekey-seconds", f.ipsecRekeySeconds, "is not a number of seconds (10-86400)");
  }
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
  let keyRotationMs: number | undefined;
  if (f.encryptionKeyRotation !== undefined) {
    const ms = parseDuration(f.encryptionKeyRotation);
    if (ms === undefined)
      throw bad(
        "--encryption-key-rotation",
        f.encryptionKeyRotation,
        "is not a duration",
        "give e.g. 24h, 30m, 7d or 1h30m (0: only `membrane encryption rotate-key`)",
      );
    if (ms !== 0 && ms < MIN_ROTATION_MS)
      throw bad("--encryption-key-rotation", f.encryptionKeyRotation, "is shorter than 1m");
    if (ms > 0) keyRotationMs = ms;
  }
  return {
    mode,
    strict: f.encryptionStrict === true,
    ...(strictCidrs ? { strictCidrs } : {}),
    port,
    ...(f.encryptionNodeToNode ? { nodeToNode: true } : {}),
    ...(keyRotationMs !== undefined ? { keyRotationMs } : {}),
    ...(rekeySeconds !== undefined ? { rekeySeconds } : {}),
    ...(tunnel ? { tunnel } : {}),
  };
}
