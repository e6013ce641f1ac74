/** Encryption flags of `membrane agent` (issue 13; parsed by src/encryption/options.ts). */
import { Option, type Command } from "commander";
import { parseEncryptionFlags, type EncryptionOptions } from "../../encryption/options.js";

export function addEncryptionFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--encryption <mode>",
        "cluster mode: encrypt pod traffic between nodes (wireguard: kernel module where present, wireguard-go otherwise; mtls-tunnel: pods' TCP carried over TLS 1.3 with the source identity's SVID, HTTP/2 CONNECT as Istio's HBONE)",
      )
        .choices(["disabled", "wireguard", "mtls-tunnel"])
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
    .option("--wireguard-port <port>", "UDP port of this node's WireGuard interface", "51871")
    .option("--mtls-tunnel-port <port>", "TCP port of this node's mTLS tunnel, on its --node-ip", "15008")
    .option(
      "--mtls-tunnel-redirect-port <port>",
      "TCP port on the pod gateway address where pods' connections to other nodes are redirected",
      "15006",
    )
    .option(
      "--mtls-tunnel-gid <gid>",
      "group the tunnel runs as; the kernel judges its marked connections with the source identity",
      "1338",
    )
    .option("--mtls-tunnel-uid <uid>", "user the tunnel drops root for once its sockets are bound", "1338");
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
      ...(s("mtlsTunnelPort") !== undefined ? { mtlsTunnelPort: s("mtlsTunnelPort") as string } : {}),
      ...(s("mtlsTunnelRedirectPort") !== undefined
        ? { mtlsTunnelRedirectPort: s("mtlsTunnelRedirectPort") as string }
        : {}),
      ...(s("mtlsTunnelGid") !== undefined ? { mtlsTunnelGid: s("mtlsTunnelGid") as string } : {}),
      ...(s("mtlsTunnelUid") !== undefined ? { mtlsTunnelUid: s("mtlsTunnelUid") as string } : {}),
      ...(s("trustDomain") !== undefined ? { trustDomain: s("trustDomain") as string } : {}),
    },
    s("clusterStore") !== undefined,
  );
}
