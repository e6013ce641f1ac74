/**
 * Encryption flags of `membrane agent` -> EncryptionOptions, with errors naming the flag.
 *
 *   --encryption disabled|wireguard|ipsec   --encryption-strict   --encryption-strict-cidr CIDR[,CIDR]
 *   --wireguard-port 51871   --ipsec-port 51872 (IKE; ESP in UDP on port + 1)   --ipsec-rekey-seconds 3600
 */
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";
import { DEFAULT_WG_PORT } from "./wireguard.js";
import { DEFAULT_IKE_PORT } from "./ipsec/ipsec.js";
import type { EncryptionMode } from "./mode.js";

export interface EncryptionOptions {
  readonly mode: EncryptionMode;
  /** Drop traffic to the strict CIDRs that would leave unencrypted. */
  readonly strict: boolean;
  /** The strict CIDRs (default: the cluster CIDR). */
  readonly strictCidrs?: readonly string[];
  /** The mode's UDP port (WireGuard's, or IKE's). */
  readonly port: number;
  /** ipsec: CHILD_SA rekey time, seconds. */
  readonly rekeySeconds?: number;
}

export interface EncryptionFlags {
  readonly encryption?: string;
  readonly encryptionStrict?: boolean;
  readonly encryptionStrictCidr?: string;
  readonly wireguardPort?: string;
  readonly ipsecPort?: string;
  readonly ipsecRekeySeconds?: string;
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
  if (mode !== "disabled" && mode !== "wireguard" && mode !== "ipsec")
    throw bad("--encryption", mode, "is not disabled, wireguard or ipsec");
  if (mode !== "ipsec" && (f.ipsecPort !== undefined || f.ipsecRekeySeconds !== undefined))
    throw new MembraneError("ENCRYPTION_INVALID", "Cannot start the agent: --ipsec-port and --ipsec-rekey-seconds need --encryption ipsec"); // prettier-ignore
  if (mode === "disabled") {
    if (f.encryptionStrict || f.encryptionStrictCidr !== undefined)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        "Cannot start the agent: --encryption-strict needs --encryption wireguard or ipsec",
      );
    return undefined;
  }
  if (!clusterMode)
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      `Cannot start the agent: --encryption ${mode} encrypts traffic between nodes and needs cluster mode`,
      { hint: "add --cluster-store etcd://HOST:PORT --node-name N --node-ip IP --cluster-cidr CIDR" },
    );
  const portFlag = mode === "ipsec" ? "--ipsec-port" : "--wireguard-port";
  const portText = (mode === "ipsec" ? f.ipsecPort : f.wireguardPort) ?? String(mode === "ipsec" ? DEFAULT_IKE_PORT : DEFAULT_WG_PORT); // prettier-ignore
  const port = Number(portText);
  const top = mode === "ipsec" ? 65534 : 65535; // ipsec: ESP in UDP on port + 1
  if (!/^\d+$/.test(portText) || port < 1 || port > top)
    throw bad(portFlag, portText, `is not a port (1-${top})`);
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
  return {
    mode,
    strict: f.encryptionStrict === true,
    ...(strictCidrs ? { strictCidrs } : {}),
    port,
    ...(rekeySeconds !== undefined ? { rekeySeconds } : {}),
  };
}
