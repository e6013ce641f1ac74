/** Encryption flags of `membrane agent` (issue 13; parsed by src/encryption/options.ts). */
import { Option, type Command } from "commander";
import { parseEncryptionFlags, type EncryptionOptions } from "../../encryption/options.js";

export function addEncryptionFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--encryption <mode>",
        "cluster mode: encrypt pod traffic between nodes (wireguard: kernel module where present, wireguard-go otherwise; ipsec: strongSwan's charon, IKEv2 with each node's key, ESP in userspace through kernel-libipsec)",
      )
        .choices(["disabled", "wireguard", "ipsec"])
        .default("disabled"),
    )
    .option(
      "--encryption-strict",
      "drop pod traffic to other nodes that would leave unencrypted (in the kernel, through restarts)",
    )
    .option(
      "--encryption-strict-cidr <cidrs>",
      "the destinations strict mode covers (default: --cluster-cidr)",
    )
    .option("--wireguard-port <port>", "UDP port of this node's WireGuard interface (default 51871)")
    .option(
      "--encryption-node-to-node",
      "also encrypt the node's own traffic to other nodes (their node addresses go through the tunnel)",
    )
    .option(
      "--encryption-key-rotation <duration>",
      "rotate this node's WireGuard key when it is this old, e.g. 24h, 7d (no connection resets; default: only `membrane encryption rotate-key`)",
    )
    .option("--ipsec-port <port>", "UDP port of this node's IKE (ESP in UDP on port + 1; default 51872)")
    .option("--ipsec-rekey-seconds <n>", "IPsec: CHILD_SA rekey time in seconds (default 3600)");
}

/** EncryptionOptions from the parsed command; undefined when encryption is off. */
export function encryptionFromFlags(cmd: Command): EncryptionOptions | undefined {
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const s = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
  return parseEncryptionFlags(
    {
      ...(s("encryption") !== undefined ? { encryption: s("encryption") as string } : {}),
      ...(o["encryptionStrict"] === true ? { encryptionStrict: true } : {}),
      ...(s("encryptionStrictCidr") !== undefined
        ? { encryptionStrictCidr: s("encryptionStrictCidr") as string }
        : {}),
      ...(s("wireguardPort") !== undefined ? { wireguardPort: s("wireguardPort") as string } : {}),
      ...(o["encryptionNodeToNode"] === true ? { encryptionNodeToNode: true } : {}),
      ...(s("encryptionKeyRotation") !== undefined
        ? { encryptionKeyRotation: s("encryptionKeyRotation") as string }
        : {}),
      ...(s("ipsecPort") !== undefined ? { ipsecPort: s("ipsecPort") as string } : {}),
      ...(s("ipsecRekeySeconds") !== undefined
        ? { ipsecRekeySeconds: s("ipsecRekeySeconds") as string }
        : {}),
    },
    s("clusterStore") !== undefined,
  );
}
