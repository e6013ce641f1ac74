/**
 * The agent's L7/DNS proxy: the workers' parameters and the datapath's
 * redirect target, from `membrane agent --proxy...` and the node's gateway
 * addresses (the proxy listens on them, in the node's namespace).
 *
 *   AgentParams.proxy (workers: N) --> ProxyWorkers (N processes, ports l7Port.. / dnsPort..)
 *   target() --> ProxyTarget with the live workers' ports (the kernel's numgen DNAT)
 */
import type { Logger } from "pino";
import type { ProxyTarget } from "../datapath/types.js";
import type { ProxySupervisorParams } from "../proxy/runtime/supervisor.js";
import { ProxyWorkers } from "../proxy/runtime/workers.js";
import type { AgentParams } from "./agent-params.js";

export function startProxySupervisor(
  p: Pick<AgentParams, "nodeNetns" | "podCidr6"> & { logger: Logger },
  cfg: NonNullable<AgentParams["proxy"]>,
  gw: { ipv4: string; ipv6?: string },
  hooks: Pick<ProxySupervisorParams, "onL7" | "onDnsAnswer" | "dnsHeldUntil"> & { onChange: () => void },
): { supervisor: ProxyWorkers; target: () => ProxyTarget } {
  const ipv6 = gw.ipv6 && p.podCidr6 ? gw.ipv6 : undefined;
  const supervisor = new ProxyWorkers({
    ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
    gid: cfg.gid,
    workers: cfg.workers ?? 1,
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
  const base = {
    ipv4: gw.ipv4,
    ...(ipv6 ? { ipv6 } : {}),
    l7Port: cfg.l7Port,
    dnsPort: cfg.dnsPort,
    gid: cfg.gid,
  };
  // One worker: the single-port rule as before. Several: the ports of those running now.
  const target = (): ProxyTarget => (supervisor.size > 1 ? { ...base, ...supervisor.ports } : base);
  return { supervisor, target };
}
