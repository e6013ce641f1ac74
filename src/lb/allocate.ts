/**
 * Addresses and ports a Service did not name: its ClusterIP (service CIDR), its
 * NodePorts (node port range) and, for a LoadBalancer, an address of each of its families from
 * that family's pool (--lb-pool) and, with externalTrafficPolicy Local, its healthCheckNodePort.
 * A service applied again keeps what it was given; what another service holds is
 * refused with the field that asks for it. Pure: the caller passes what is in use.
 */
import { MembraneError } from "../errors.js";
import { addrString, familyWidth, parseAddr, parsePrefix } from "../labels/cidr.js";
import type { IpFamily, LbConfig, LbService } from "./types.js";

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
  if (!c) throw new MembraneError("CONFIG_INVALID", `Cannot allocate from "${cidr}": not a CIDR`);
  const size = 2n ** BigInt(familyWidth(c.family) - c.bits);
  // Skip the network address (and the first host, the CIDR's gateway by habit), and the last.
  for (let i = 2n; i < size - 1n && i < 1_000_000n; i++) yield addrString(c.family, c.addr + i);
}

/** The LoadBalancer pools of a config (--lb-pool). */
export type LbPools = Pick<LbConfig, "loadBalancerPool" | "loadBalancerPoolSecondary">;

const familyOfAddr = (ip: string): IpFamily => (ip.includes(":") ? "IPv6" : "IPv4");

/** The node's service CIDR of a family, if it has one. */
function poolOf(cfg: LbConfig, f: IpFamily): string | undefined {
  return [cfg.serviceCidr, cfg.serviceCidrSecondary].find(
    (c) => c !== undefined && familyOfAddr(c.split("/")[0] ?? "") === f,
  );
}

/**
 * The families a service gets, primary first, as the apiserver decides them: SingleStack, the one
 * asked (ipFamilies, or the given address's) or the cluster's primary; PreferDualStack, both when
 * the cluster has both; RequireDualStack, both or refused.
 */
function familiesOf(s: LbService, previous: LbService | undefined, cfg: LbConfig): IpFamily[] {
  const primary = familyOfAddr(cfg.serviceCidr.split("/")[0] ?? "");
  const given = (s.clusterIPs ?? (s.clusterIP !== undefined ? [s.clusterIP] : [])).filter(
    (a) => a !== "None",
  );
  const asked = s.ipFamilies ?? (given.length > 0 ? given.map(familyOfAddr) : previous?.ipFamilies);
  const first = asked?.[0] ?? primary;
  const other: IpFamily = first === "IPv4" ? "IPv6" : "IPv4";
  const hasBoth = cfg.serviceCidrSecondary !== undefined;
  const fams: IpFamily[] =
    s.ipFamilyPolicy === undefined
      ? [first]
      : s.ipFamilyPolicy === "RequireDualStack" || hasBoth
        ? [first, asked?.[1] ?? other]
        : [first];
  if (s.ipFamilyPolicy === "RequireDualStack" && !hasBoth)
    throw refuse(s, "spec.ipFamilyPolicy", "RequireDualStack: the cluster has one service CIDR (--service-cidr); give it one of each family, e.g. --service-cidr 10.96.0.0/16,fd00:96::/112"); // prettier-ignore
  fams.forEach((f, i) => {
    if (poolOf(cfg, f) === undefined)
      throw refuse(s, s.ipFamilies ? `spec.ipFamilies[${i}]` : "spec.clusterIP", `${f}: the cluster has no ${f} service CIDR (--service-cidr ${cfg.serviceCidr}${cfg.serviceCidrSecondary ? `,${cfg.serviceCidrSecondary}` : ""})`); // prettier-ignore
  });
  return fams;
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
  let clusterIPs: string[] = [];
  if (s.clusterIP === "None") clusterIPs = ["None"];
  else {
    const fams = familiesOf(s, previous, cfg);
    const given = s.clusterIPs ?? (s.clusterIP !== undefined ? [s.clusterIP] : []);
    const before = previous?.clusterIPs ?? (previous?.clusterIP !== undefined && previous.clusterIP !== "None" ? [previous.clusterIP] : []); // prettier-ignore
    fams.forEach((f, i) => {
      const path = s.clusterIPs ? `spec.clusterIPs[${i}]` : "spec.clusterIP";
      let ip = given.find((a) => familyOfAddr(a) === f) ?? before.find((a) => familyOfAddr(a) === f);
      if (ip !== undefined) {
        const h = holder(ip);
        if (h) throw refuse(s, path, `${ip}: provided IP is already allocated (to service ${h})`);
      } else {
        const pool = poolOf(cfg, f) as string;
        for (const a of hostsOf(pool)) if (!used.ips.has(a) && !clusterIPs.includes(a)) { ip = a; break; } // prettier-ignore
        if (ip === undefined)
          throw refuse(s, path, `cannot be allocated: the service CIDR ${pool} (--service-cidr) is full`);
      }
      clusterIPs.push(ip);
    });
  }
  const clusterIP = clusterIPs[0] as string;
  const families = clusterIP === "None" ? [] : clusterIPs.map(familyOfAddr);
  const dual = clusterIPs.length === 2 ? { clusterIPs } : {};
  // IPv4 alone is what a record without ipFamilies means (every record written before IPv6).
  const famField = families.length === 1 && families[0] === "IPv4" ? {} : families.length ? { ipFamilies: families } : {}; // prettier-ignore
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
  const healthCheckNodePort = healthPort(s, previous, used, cfg, taken, me);
  const lbIPs =
    s.type === "LoadBalancer" ? loadBalancerIPs(s, previous, used, cfg, families, clusterIPs) : [];
  const { clusterIPs: _c, ipFamilies: _f, loadBalancerIPs: _l, healthCheckNodePort: _h, ...rest } = s;
  return {
    ...rest,
    clusterIP,
    ...dual,
    ...famField,
    ports,
    ...(lbIPs[0] !== undefined ? { loadBalancerIP: lbIPs[0] } : {}),
    ...(lbIPs.length === 2 ? { loadBalancerIPs: lbIPs } : {}),
    ...(healthCheckNodePort !== undefined ? { healthCheckNodePort } : {}),
  };
}

/** The LoadBalancer pool of a family (--lb-pool), if the node has one. */
function lbPoolOf(cfg: LbPools, f: IpFamily): string | undefined {
  return [cfg.loadBalancerPool, cfg.loadBalancerPoolSecondary].find(
    (c) => c !== undefined && familyOfAddr(c.split("/")[0] ?? "") === f,
  );
}

/**
 * The first address of a family's LoadBalancer pool that `used` does not hold; undefined without
 * a pool of that family, or when it is full. A Gateway's own address (agent/gateway-addresses.ts)
 * comes from here, reserved like a Service's (reservations.ts), so neither takes the other's.
 */
export function freeLoadBalancerIP(cfg: LbPools, f: IpFamily, used: InUse): string | undefined {
  const pool = lbPoolOf(cfg, f);
  if (pool === undefined) return undefined;
  for (const ip of hostsOf(pool)) if (!used.ips.has(ip)) return ip;
  return undefined;
}

/**
 * A LoadBalancer's addresses: one per family the service has (primary first) from that family's
 * pool, the ones it held before kept. A family without a pool gets none (its address stays
 * pending, as a cloud without IPv6 load balancers would leave it); none at all: "<pending>".
 */
function loadBalancerIPs(
  s: LbService,
  previous: LbService | undefined,
  used: InUse,
  cfg: LbConfig,
  families: readonly IpFamily[],
  clusterIPs: readonly string[],
): string[] {
  const before = previous?.loadBalancerIPs ?? (previous?.loadBalancerIP !== undefined ? [previous.loadBalancerIP] : []); // prettier-ignore
  const out: string[] = [];
  for (const f of families.length > 0 ? families : (["IPv4"] as const)) {
    const pool = lbPoolOf(cfg, f);
    const kept = before.find((a) => familyOfAddr(a) === f);
    // The record is this service's own (read back from the store): keep what it held, pool or not.
    if (kept !== undefined && parseAddr(kept) !== undefined) {
      out.push(kept);
      continue;
    }
    if (pool === undefined) continue;
    for (const ip of hostsOf(pool))
      if (!used.ips.has(ip) && !clusterIPs.includes(ip) && !out.includes(ip)) {
        out.push(ip);
        break;
      }
  }
  return out;
}

/**
 * spec.healthCheckNodePort of a LoadBalancer with externalTrafficPolicy Local, as the apiserver
 * does: the one given, else the one held before, else the first free TCP port of the node port
 * range; it shares that range (and its reservations) with the NodePorts. Other services: none.
 */
function healthPort(
  s: LbService,
  previous: LbService | undefined,
  used: InUse,
  cfg: LbConfig,
  taken: Set<string>,
  me: string,
): number | undefined {
  if (s.type !== "LoadBalancer" || s.externalLocal !== true) return undefined;
  const path = "spec.healthCheckNodePort";
  const free = (n: number): boolean => {
    const h = used.nodePorts.get(`TCP/${n}`);
    return (h === undefined || h === me) && !taken.has(`TCP/${n}`);
  };
  const want = s.healthCheckNodePort ?? previous?.healthCheckNodePort;
  if (want !== undefined) {
    if (!free(want))
      throw refuse(s, path, `TCP/${want} is already used by ${taken.has(`TCP/${want}`) ? "a nodePort of this service" : `service ${used.nodePorts.get(`TCP/${want}`) ?? me}`}`); // prettier-ignore
    return want;
  }
  for (let n = cfg.nodePortRange[0]; n <= cfg.nodePortRange[1]; n++) if (free(n)) return n;
  throw refuse(s, path, `cannot be allocated: the node port range ${cfg.nodePortRange.join("-")} (--node-port-range) is full for TCP`); // prettier-ignore
}
