/**
 * The node's service address configuration from `membrane agent` flags (or its config file):
 * --service-cidr, --lb-pool, --node-port-range -> LbConfig (types.ts). Pure; every error names
 * the flag and what to give instead. The pod CIDRs are passed to refuse an overlap: a ClusterIP
 * that is also a pod's address would be balanced away from the pod.
 */
import { MembraneError } from "../errors.js";
import { containsPrefix, parsePrefix, prefixString, type Prefix } from "../labels/cidr.js";
import { DEFAULT_LB_CONFIG, type LbConfig } from "./types.js";

export interface LbFlags {
  readonly serviceCidr?: string;
  readonly lbPool?: string;
  readonly nodePortRange?: string;
  /** The node's (or the cluster's) pod CIDRs, to refuse an overlap. */
  readonly podCidrs?: readonly string[];
  /** What the flags are given for, in errors ("Cannot <doing>: ..."); default "start the agent". */
  readonly doing?: string;
}

function usage(d: string, flag: string, why: string, hint: string): MembraneError {
  return new MembraneError("CLI_USAGE", `Cannot ${d}: ${flag} ${why}`, {
    location: { path: flag },
    hint,
  });
}

function cidr(d: string, flag: string, text: string, example: string, v6 = false): Prefix {
  const p = parsePrefix(text.trim());
  if (!p || (p.family !== 4 && !v6) || !text.includes("/"))
    throw usage(d, flag, `"${text}" is not an IPv4${v6 ? " or IPv6" : ""} CIDR`, `Give ${v6 ? "a" : "an IPv4"} CIDR, e.g. ${flag} ${example}.`); // prettier-ignore
  const max = p.family === 4 ? 30 : 126;
  if (p.bits > max)
    throw usage(d, flag, `${text} holds no address to allocate (/${p.bits})`, `Give a prefix of /${max} or shorter, e.g. ${flag} ${example}.`); // prettier-ignore
  if (prefixString(p) !== text.trim())
    throw usage(d, flag, `${text} has host bits set`, `Did you mean ${flag} ${prefixString(p)}?`);
  return p;
}

/**
 * --service-cidr and --lb-pool: one CIDR, or one of each family (kube-apiserver's
 * --service-cluster-ip-range form).
 */
function familyCidrs(d: string, flag: string, text: string, example: string): Prefix[] {
  const parts = text.split(",").map((t) => t.trim());
  if (parts.length > 2)
    throw usage(d, flag, `"${text}" has more than two CIDRs`, `Give one, or one of each family, e.g. ${flag} ${example}.`); // prettier-ignore
  const ps = parts.map((t) => cidr(d, flag, t, example, true));
  if (ps.length === 2 && ps[0]?.family === ps[1]?.family)
    throw usage(d, flag, `"${text}" has two CIDRs of one family`, `Give one of each family (dual-stack), e.g. ${flag} ${example}.`); // prettier-ignore
  return ps;
}
const serviceCidrs = (d: string, text: string): Prefix[] => familyCidrs(d, "--service-cidr", text, "10.96.0.0/16,fd00:96::/112"); // prettier-ignore

const overlap = (a: Prefix, b: Prefix): boolean => containsPrefix(a, b) || containsPrefix(b, a);

export function parseLbFlags(f: LbFlags): LbConfig {
  const d = f.doing ?? "start the agent";
  const svcs = serviceCidrs(d, f.serviceCidr ?? DEFAULT_LB_CONFIG.serviceCidr);
  const [svc, second] = svcs as [Prefix, Prefix | undefined];
  const pools = f.lbPool !== undefined ? familyCidrs(d, "--lb-pool", f.lbPool, "192.0.2.0/24,2001:db8:5::/112") : []; // prettier-ignore
  const [pool, pool2] = pools as [Prefix | undefined, Prefix | undefined];
  for (const s of svcs)
    for (const p of pools)
      if (overlap(s, p))
        throw usage(d, "--lb-pool", `${prefixString(p)} overlaps --service-cidr ${prefixString(s)}`, "Give LoadBalancer addresses a range of their own."); // prettier-ignore
  for (const pod of f.podCidrs ?? []) {
    const p = parsePrefix(pod);
    if (!p) continue;
    for (const s of svcs)
      if (overlap(s, p))
        throw usage(d, "--service-cidr", `${prefixString(s)} overlaps the pod CIDR ${pod}`, "Give services and pods separate ranges (e.g. --service-cidr 10.96.0.0/16)."); // prettier-ignore
    for (const q of pools)
      if (overlap(q, p))
        throw usage(d, "--lb-pool", `${prefixString(q)} overlaps the pod CIDR ${pod}`, "Give LoadBalancer addresses a range of their own."); // prettier-ignore
  }
  let range = DEFAULT_LB_CONFIG.nodePortRange;
  if (f.nodePortRange !== undefined) {
    const m = /^(\d{1,5})-(\d{1,5})$/.exec(f.nodePortRange.trim());
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2]);
    if (!m || lo < 1 || hi > 65535 || lo > hi)
      throw usage(d, "--node-port-range", `"${f.nodePortRange}" is not a port range FIRST-LAST within 1-65535`, "Give it as Kubernetes does, e.g. --node-port-range 30000-32767."); // prettier-ignore
    range = [lo, hi];
  }
  return {
    serviceCidr: prefixString(svc),
    ...(second ? { serviceCidrSecondary: prefixString(second) } : {}),
    ...(pool ? { loadBalancerPool: prefixString(pool) } : {}),
    ...(pool2 ? { loadBalancerPoolSecondary: prefixString(pool2) } : {}),
    nodePortRange: range,
  };
}
