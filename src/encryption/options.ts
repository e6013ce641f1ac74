/**
 * Encryption flags of `membrane agent` -> EncryptionOptions, with errors naming the flag.
 *
 *   --encryption disabled|wireguard   --encryption-strict   --encryption-strict-cidr CIDR[,CIDR]
 *   --wireguard-port 51871
 */
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";
import { DEFAULT_WG_PORT } from "./wireguard.js";

export interface EncryptionOptions {
  readonly mode: "wireguard";
  /** Drop traffic to the strict CIDRs that would leave unencrypted. */
  readonly strict: boolean;
  /** The strict CIDRs (default: the cluster CIDR). */
  readonly strictCidrs?: readonly string[];
  readonly port: number;
}

export interface EncryptionFlags {
  readonly encryption?: string;
  readonly encryptionStrict?: boolean;
  readonly encryptionStrictCidr?: string;
  readonly wireguardPort?: string;
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
  if (mode !== "disabled" && mode !== "wireguard")
    throw bad("--encryption", mode, "is not disabled or wireguard");
  if (mode === "disabled") {
    if (f.encryptionStrict || f.encryptionStrictCidr !== undefined)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        "Cannot start the agent: --encryption-strict needs --encryption wireguard",
      );
    return undefined;
  }
  if (!clusterMode)
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      "Cannot start the agent: --encryption wireguard encrypts traffic between nodes and needs cluster mode",
      { hint: "add --cluster-store etcd://HOST:PORT --node-name N --node-ip IP --cluster-cidr CIDR" },
    );
  const portText = f.wireguardPort ?? String(DEFAULT_WG_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw bad("--wireguard-port", portText, "is not a port (1-65535)");
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
    mode: "wireguard",
    strict: f.encryptionStrict === true,
    ...(strictCidrs ? { strictCidrs } : {}),
    port,
  };
}
