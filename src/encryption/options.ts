/**
 * Encryption flags of `membrane agent` -> EncryptionOptions, with errors naming the flag.
 *
 *   --encryption disabled|wireguard|ipsec   --encryption-strict   --encryption-strict-cidr CIDR[,CIDR]
 *   --wireguard-port 51871   --encryption-node-to-node   --encryption-key-rotation 24h (wireguard)
 *   --ipsec-port 51872 (IKE; ESP in UDP on port + 1)   --ipsec-rekey-seconds 3600
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
  /** The node's own traffic to peer nodes goes through the tunnel too. */
  readonly nodeToNode?: boolean;
  /** Rotate the node's key when it is this old (ms); absent = on request only. */
  readonly keyRotationMs?: number;
  /** ipsec: CHILD_SA rekey time, seconds. */
  readonly rekeySeconds?: number;
}

export interface EncryptionFlags {
  readonly encryption?: string;
  readonly encryptionStrict?: boolean;
  readonly encryptionStrictCidr?: string;
  readonly wireguardPort?: string;
  readonly encryptionNodeToNode?: boolean;
  readonly encryptionKeyRotation?: string;
  readonly ipsecPort?: string;
  readonly ipsecRekeySeconds?: string;
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
    const needs = f.encryptionStrict
      ? "--encryption-strict"
      : f.encryptionStrictCidr !== undefined
        ? "--encryption-strict-cidr"
        : f.encryptionNodeToNode
          ? "--encryption-node-to-node"
          : f.encryptionKeyRotation !== undefined
            ? "--encryption-key-rotation"
            : undefined;
    if (needs !== undefined)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        `Cannot start the agent: ${needs} needs --encryption wireguard${needs === "--encryption-strict" || needs === "--encryption-strict-cidr" ? " or ipsec" : ""}`,
      );
    return undefined;
  }
  if (mode === "ipsec" && (f.encryptionNodeToNode || f.encryptionKeyRotation !== undefined))
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      `Cannot start the agent: ${f.encryptionNodeToNode ? "--encryption-node-to-node" : "--encryption-key-rotation"} needs --encryption wireguard (IPsec encrypts pod traffic only, and rekeys its SAs by --ipsec-rekey-seconds)`,
    );
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
  };
}
