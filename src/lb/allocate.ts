/**
 * Addresses and ports a Service did not name: its ClusterIP (service CIDR), its
 * NodePorts (node port range) and, for a LoadBalancer, an address from the pool.
 * A service applied again keeps what it was given; what another service holds is
 * refused with the field that asks for it. Pure: the caller passes what is in use.
 */
import { MembraneError } from "../errors.js";
import { parseAddr, parsePrefix } from "../labels/cidr.js";
import type { LbConfig, LbService } from "./types.js";

export interface InUse {
  /** Address -> "namespace/name" of the service holding it (ClusterIPs and LoadBalancer addresses). */
  readonly ips: ReadonlyMap<string, string>;
  /** "TCP/30080" -> service. */
  readonly nodePorts: ReadonlyMap<string, string>;
}

function refuse(s: LbService, path: string, why: string): MembraneError {
  return new MembraneError(
    "SERVICE_INVALID",
    `Cannot apply Service ${s.namespace}/${s.name}: ${path} ${why}`,
    {
      location: { path },
      hint: "Leave the field out to have one allocated, or choose a free one.",
    },
  );
}

function* hostsOf(cidr: string): Generator<string> {
  const c = parsePrefix(cidr);
  if (!c || c.family !== 4)
    throw new MembraneError("CONFIG_INVALID", `Cannot allocate from "${cidr}": not an IPv4 CIDR`);
  const size = 2n ** BigInt(32 - c.bits);
  // Skip the network address (and the first host, the CIDR's gateway by habit), and the broadcast.
  for (let i = 2n; i < size - 1n && i < 1_000_000n; i++) {
    const v = Number(c.addr + i);
    yield [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
  }
}

export function allocate(
  s: LbService,
  previous: LbService | undefined,
  used: InUse,
  cfg: LbConfig,
): LbService {
  const me = `${s.namespace}/${s.name}`;
  const holder = (ip: string): string | undefined => {
    const h = used.ips.get(ip);
    return h === me ? undefined : h;
  };
  let clusterIP = s.clusterIP ?? (previous?.clusterIP !== "None" ? previous?.clusterIP : undefined);
  if (clusterIP !== undefined && clusterIP !== "None") {
    const h = holder(clusterIP);
    if (h)
      throw refuse(s, "spec.clusterIP", `${clusterIP}: provided IP is already allocated (to service ${h})`);
  }
  if (clusterIP === undefined) {
    for (const ip of hostsOf(cfg.serviceCidr)) if (!used.ips.has(ip)) { clusterIP = ip; break; } // prettier-ignore
    if (clusterIP === undefined)
      throw refuse(
        s,
        "spec.clusterIP",
        `cannot be allocated: the service CIDR ${cfg.serviceCidr} (--service-cidr) is full`,
      );
  }
  const taken = new Set<string>();
  const ports = s.ports.map((p, i) => {
    if (s.type === "ClusterIP") return p;
    const prev = previous?.ports.find((q) => q.port === p.port && q.protocol === p.protocol)?.nodePort;
    let nodePort = p.nodePort ?? prev;
    const free = (n: number): boolean => {
      const h = used.nodePorts.get(`${p.protocol}/${n}`);
      return (h === undefined || h === me) && !taken.has(`${p.protocol}/${n}`);
    };
    if (nodePort !== undefined && !free(nodePort))
      throw refuse(
        s,
        `spec.ports[${i}].nodePort`,
        `${p.protocol}/${nodePort} is already used by service ${used.nodePorts.get(`${p.protocol}/${nodePort}`) ?? me}`,
      );
    if (nodePort === undefined) {
      for (let n = cfg.nodePortRange[0]; n <= cfg.nodePortRange[1]; n++) if (free(n)) { nodePort = n; break; } // prettier-ignore
      if (nodePort === undefined)
        throw refuse(
          s,
          `spec.ports[${i}].nodePort`,
          `cannot be allocated: the node port range ${cfg.nodePortRange.join("-")} (--node-port-range) is full for ${p.protocol}`,
        );
    }
    taken.add(`${p.protocol}/${nodePort}`);
    return { ...p, nodePort };
  });
  let loadBalancerIP = s.type === "LoadBalancer" ? previous?.loadBalancerIP : undefined;
  if (s.type === "LoadBalancer" && loadBalancerIP === undefined && cfg.loadBalancerPool !== undefined) {
    for (const ip of hostsOf(cfg.loadBalancerPool)) if (!used.ips.has(ip) && ip !== clusterIP) { loadBalancerIP = ip; break; } // prettier-ignore
  }
  if (loadBalancerIP !== undefined && parseAddr(loadBalancerIP)?.family !== 4) loadBalancerIP = undefined;
  return { ...s, clusterIP, ports, ...(loadBalancerIP !== undefined ? { loadBalancerIP } : {}) };
}
