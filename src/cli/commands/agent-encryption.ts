/** Encryption flags of `membrane agent` (issue 13; parsed by src/encryption/options.ts). */
import { Option, type Command } from "commander";
import { parseEncryptionFlags, type EncryptionOptions } from "../../encryption/options.js";

export function addEncryptionFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--encryption <mode>",
        "cluster mode: encrypt pod traffic between nodes (wireguard: kernel module where present, wireguard-go otherwise; ipsec: strongSwan's charon, IKEv2 with each node's key, ESP in userspace through kernel-libipsec; mtls-tunnel: pods' TCP carried over TLS 1.3 with the source identity's SVID, HTTP/2 CONNECT as Istio's HBONE)",
      )
        .choices(["disabled", "wireguard", "ipsec", "mtls-tunnel"])
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
      "rotate this node's WireGuard or IPsec key when it is this old, e.g. 24h, 7d (no connection resets; default: only `membrane encryption rotate-key`)",
    )
    .option("--ipsec-port <port>", "UDP port of this node's IKE (ESP in UDP on port + 1; default 51872)")
    .option("--ipsec-rekey-seconds <n>", "IPsec: CHILD_SA rekey time in seconds (default 3600)")
    .option(
      "--mtls-tunnel-port <port>",
      "TCP port of this node's mTLS tunnel, on its --node-ip (default 15008)",
    )
    .option(
      "--mtls-tunnel-redirect-port <port>",
      "TCP port on the pod gateway address where pods' connections to other nodes are redirected (default 15006)",
    )
    .option(
      "--mtls-tunnel-gid <gid>",
      "group the mTLS tunnel runs as; the kernel judges its marked connections with the source identity (default 1338)",
    )
    .option(
      "--mtls-tunnel-uid <uid>",
      "user the mTLS tunnel drops root for once its sockets are bound (default 1338)",
    );
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
