/**
 * Wiring of encryption for one agent: EncryptionOptions + the cluster session -> a started
 * EncryptionAgent of the mode (WireGuardAgent, IpsecAgent: strict table, key, tunnel; or
 * MtlsTunnelAgent: strict table, redirect, CA, tunnel process), or undefined when encryption is off.
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import type { ClusterOptions, ClusterSession } from "../cluster/session.js";
import type { EncryptionOptions } from "./options.js";
import { WireGuardAgent } from "./wireguard.js";
import { IpsecAgent } from "./ipsec/ipsec.js";
import { MtlsTunnelAgent } from "./mtls/agent.js";
import type { EncryptionAgent } from "./mode.js";

export interface EncryptionStartOptions {
  readonly encryption?: EncryptionOptions;
  readonly cluster?: ClusterOptions;
  readonly nodeNetns?: string;
  readonly stateDir: string;
  readonly logGroup: number;
}

/** What the mTLS tunnel needs of the agent, known only once it runs. */
export interface EncryptionHooks {
  readonly identityOf: (ip: string) => number | undefined;
  readonly hosts: (node: string, identity: number) => boolean;
}

export async function startEncryption(
  o: EncryptionStartOptions,
  session: ClusterSession | undefined,
  localCidrs: readonly (string | undefined)[],
  logger: Logger,
  hooks: EncryptionHooks,
): Promise<EncryptionAgent | undefined> {
  const e = o.encryption;
  if (!e) return undefined;
  if (!session || !o.cluster)
    throw new MembraneError("ENCRYPTION_INVALID", "Cannot start encryption: --encryption needs cluster mode");
  let strictCidrs: readonly string[] | undefined;
  const cc = o.cluster.podCidrs.clusterCidr;
  const clusterCidrs = [cc?.ipv4, cc?.ipv6].filter((c): c is string => c !== undefined);
  if (e.strict) {
    strictCidrs = e.strictCidrs ?? [cc?.ipv4, cc?.ipv6].filter((c): c is string => c !== undefined);
    if (strictCidrs.length === 0)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        "Cannot start the agent: --encryption-strict needs --cluster-cidr or --encryption-strict-cidr",
        { hint: "give the CIDR every node's pods are in, e.g. --encryption-strict-cidr 10.200.0.0/16" },
      );
  }
  const local = localCidrs.filter((c): c is string => c !== undefined);
  if (e.mode === "mtls-tunnel") {
    const nodeIp = o.cluster.nodeIp.ipv4;
    if (!e.tunnel || nodeIp === undefined || !cc?.ipv4)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        "Cannot start the agent: --encryption mtls-tunnel carries IPv4 pod traffic and needs an IPv4 --node-ip and --cluster-cidr",
        { hint: "e.g. --node-ip 10.0.0.11 --cluster-cidr 10.200.0.0/16" },
      );
    const t = new MtlsTunnelAgent({
      node: o.cluster.node,
      ...(o.nodeNetns !== undefined ? { netns: o.nodeNetns } : {}),
      stateDir: o.stateDir,
      port: e.port,
      tunnel: e.tunnel,
      nodeIp,
      localCidrs: local,
      clusterCidrs,
      ...(strictCidrs ? { strictCidrs } : {}),
      logGroup: o.logGroup,
      logger,
      identityOf: hooks.identityOf,
      hosts: hooks.hosts,
    });
    await t.start();
    return t;
  }
  const selfIp = o.cluster.nodeIp.ipv4 ?? o.cluster.nodeIp.ipv6;
  if (e.nodeToNode && selfIp === undefined)
    throw new MembraneError(
      "ENCRYPTION_INVALID",
      "Cannot start the agent: --encryption-node-to-node needs --node-ip (the source of the node's traffic)",
    );
  const common = {
    node: o.cluster.node,
    ...(o.nodeNetns !== undefined ? { netns: o.nodeNetns } : {}),
    stateDir: o.stateDir,
    port: e.port,
    ...(strictCidrs ? { strictCidrs } : {}),
    localCidrs: local,
    logGroup: o.logGroup,
    logger,
  };
  let agent: EncryptionAgent;
  if (e.mode === "ipsec") {
    const nodeIp = o.cluster.nodeIp.ipv4;
    if (nodeIp === undefined)
      throw new MembraneError("ENCRYPTION_INVALID", "Cannot start IPsec: it needs an IPv4 --node-ip (IKE's address)"); // prettier-ignore
    agent = new IpsecAgent({
      ...common,
      nodeIp,
      ...(e.rekeySeconds !== undefined ? { rekeySeconds: e.rekeySeconds } : {}),
      ...(e.keyRotationMs !== undefined ? { keyRotationMs: e.keyRotationMs } : {}),
    });
  } else
    agent = new WireGuardAgent({
      ...common,
      ...(e.nodeToNode ? { nodeToNode: { selfIp: selfIp as string } } : {}),
      ...(e.keyRotationMs !== undefined ? { keyRotationMs: e.keyRotationMs } : {}),
    });
  await agent.start();
  return agent;
}
