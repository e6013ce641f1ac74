/**
 * The agent's L7/DNS proxy: the supervisor's parameters and the datapath's
 * redirect target, from `membrane agent --proxy...` and the node's gateway
 * addresses (the proxy listens on them, in the node's namespace).
 */
import type { Logger } from "pino";
import type { ProxyTarget } from "../datapath/types.js";
import { ProxySupervisor, type ProxySupervisorParams } from "../proxy/runtime/supervisor.js";
import type { AgentParams } from "./agent-params.js";

export function startProxySupervisor(
  p: Pick<AgentParams, "nodeNetns" | "podCidr6"> & { logger: Logger },
  cfg: NonNullable<AgentParams["proxy"]>,
  gw: { ipv4: string; ipv6?: string },
  hooks: Pick<ProxySupervisorParams, "onL7" | "onDnsAnswer">,
): { supervisor: ProxySupervisor; target: ProxyTarget } {
  const ipv6 = gw.ipv6 && p.podCidr6 ? gw.ipv6 : undefined;
  const supervisor = new ProxySupervisor({
    ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
    gid: cfg.gid,
    config: {
      ipv4: gw.ipv4,
      ...(ipv6 ? { ipv6 } : {}),
      l7Port: cfg.l7Port,
      dnsPort: cfg.dnsPort,
      ...(cfg.secretsDir !== undefined ? { secretsDir: cfg.secretsDir } : {}),
      ...(cfg.uid !== undefined ? { uid: cfg.uid } : {}),
    },
    logger: p.logger,
    ...hooks,
  });
  const target = {
    ipv4: gw.ipv4,
    ...(ipv6 ? { ipv6 } : {}),
    l7Port: cfg.l7Port,
    dnsPort: cfg.dnsPort,
    gid: cfg.gid,
  };
  return { supervisor, target };
}
