/**
 * The workload of the layout benchmark (bench/layout.ts), generated from a
 * fixed seed so that every candidate and every run sees the same node:
 *
 *   1,000 local endpoints, each with ~20 policy elements per direction
 *     (specific identities on TCP/UDP ports, some port ranges; on some
 *     endpoints ICMP entries and identity-0 "any" entries)
 *   50,000 ipcache /32 pod addresses (250 nodes x 200 pods, 10.64.N.1-200)
 *     carrying 10,000 identities, plus 200 CIDR prefixes, 50 of which
 *     overlap pod addresses.
 *
 * Endpoints 1 and 2 are real (bench/layout-traffic.ts gives them a netns
 * and a veth): 1 sends UDP to 2 on ports 10000-60000, and both directions'
 * maps hold the element that allows it, so the packet path's lookups match.
 */

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const FIRST_IDENTITY = 256;
export const IDENTITIES = 10_000;
export const CIDR_IDENTITY_BASE = 1 << 24;
export const WORLD = 2;
/** The UDP port range the traffic test sends to. */
export const TRAFFIC_PORTS = { lo: 10_000, hi: 60_000 } as const;
/** The allow rule whose chain counts the traffic test's matches. */
export const TRAFFIC_RULE = 9;

/** One MapState entry as the compiler sees it: identity 0 = any; ICMP keeps the type in lo/hi. */
export interface PolicyElement {
  identity: number;
  proto: number;
  lo: number;
  hi: number;
  rule: number;
}

export interface BenchEndpoint {
  id: number;
  ifname: string;
  ipv4: string;
  identity: number;
  ingress: PolicyElement[];
  egress: PolicyElement[];
}

export interface IpcacheEntry {
  prefix: string;
  identity: number;
}

export interface Workload {
  endpoints: BenchEndpoint[];
  ipcache: IpcacheEntry[];
}

/** mulberry32: small, seeded, good enough to spread identities and ports. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Address of pod `i` of the cluster: node i/200 (10.64.N.0/24), host part 1..200. */
export function podAddress(i: number): string {
  return `10.64.${Math.floor(i / 200)}.${(i % 200) + 1}`;
}
export const podIdentity = (i: number): number => FIRST_IDENTITY + ((i * 7919) % IDENTITIES);

const PORTS = [80, 443, 8080, 8443, 5432, 3306, 6379, 9092, 53, 9090, 8000, 2379, 27017, 11211];

function direction(r: () => number): PolicyElement[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const ident = (): number => FIRST_IDENTITY + Math.floor(r() * IDENTITIES);
  const out: PolicyElement[] = [];
  const seen = new Set<string>();
  const add = (e: PolicyElement): void => {
    // One element per (identity, protocol): keeps the interval maps free of overlaps.
    const k = `${e.identity}.${e.proto}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push(e);
  };
  const nId = 14 + Math.floor(r() * 5);
  for (let i = 0; i < nId; i++) {
    const proto = r() < 0.8 ? PROTO_TCP : PROTO_UDP;
    const rule = 1 + Math.floor(r() * 4);
    if (r() < 0.25) {
      const lo = 1024 + Math.floor(r() * 30_000);
      add({ identity: ident(), proto, lo, hi: lo + 1 + Math.floor(r() * 1000), rule });
    } else {
      const p = pick(PORTS);
      add({ identity: ident(), proto, lo: p, hi: p, rule });
    }
  }
  if (r() < 0.3) add({ identity: ident(), proto: PROTO_ICMP, lo: 8, hi: 8, rule: 5 });
  if (r() < 0.3) {
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) {
      const p = pick(PORTS);
      if (!out.some((e) => e.identity === 0 && e.proto === PROTO_TCP && e.lo === p))
        out.push({ identity: 0, proto: PROTO_TCP, lo: p, hi: p, rule: 6 });
    }
  }
  if (r() < 0.15) out.push({ identity: 0, proto: PROTO_ICMP, lo: 8, hi: 8, rule: 7 });
  return out;
}

/** The CIDR prefixes: 50 overlap pod ranges (/26 inside 10.64.N.0/24), 150 outside. */
function cidrs(): IpcacheEntry[] {
  const out: IpcacheEntry[] = [];
  for (let i = 0; i < 50; i++)
    out.push({ prefix: `10.64.${i * 5}.${(i % 4) * 64}/26`, identity: CIDR_IDENTITY_BASE + i });
  for (let i = 0; i < 150; i++) {
    const len = [24, 20, 28][i % 3] as number;
    const third = len === 20 ? (i % 16) * 16 : i;
    const fourth = len === 28 ? 16 * (i % 16) : 0;
    out.push({
      prefix: `172.${16 + (i % 16)}.${third}.${fourth}/${len}`,
      identity: CIDR_IDENTITY_BASE + 50 + i,
    });
  }
  return out;
}

export function makeWorkload(endpoints = 1000, pods = 50_000, seed = 10): Workload {
  const r = rng(seed);
  const eps: BenchEndpoint[] = [];
  for (let id = 1; id <= endpoints; id++) {
    // Local endpoints are the first pods of the ipcache (this node's addresses).
    eps.push({
      id,
      ifname: `mblv${id}`,
      ipv4: podAddress(id - 1),
      identity: podIdentity(id - 1),
      ingress: direction(r),
      egress: direction(r),
    });
  }
  const [sender, receiver] = [eps[0], eps[1]];
  if (sender && receiver) {
    const allow = (identity: number): PolicyElement => ({
      identity,
      proto: PROTO_UDP,
      lo: TRAFFIC_PORTS.lo,
      hi: TRAFFIC_PORTS.hi,
      rule: TRAFFIC_RULE,
    });
    sender.egress = [
      ...sender.egress.filter((e) => e.identity !== receiver.identity),
      allow(receiver.identity),
    ];
    receiver.ingress = [
      ...receiver.ingress.filter((e) => e.identity !== sender.identity),
      allow(sender.identity),
    ];
  }
  const ipcache: IpcacheEntry[] = [];
  for (let i = 0; i < pods; i++) ipcache.push({ prefix: `${podAddress(i)}/32`, identity: podIdentity(i) });
  ipcache.push(...cidrs());
  return { endpoints: eps, ipcache };
}
