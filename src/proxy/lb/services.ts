/**
 * The lb-l7 services the node's proxy balances (`service.cilium.io/lb-l7:
 * enabled`): what the agent sends in the snapshot, indexed by frontend.
 *
 *   agent (agent/proxy-lb.ts: LB frontends + policy) --ProxyLbService[]--> LbServiceIndex
 *     frontend(ip, port)        -> the service, or undefined (not ours: fail closed)
 *     backendsFor(svc, client)  -> the backends this client identity may reach
 *
 * Who may reach which backend is decided by the agent with the policy engine (the
 * client's egress towards the backend's identity and the backend's ingress from the
 * client's, at L3/L4), since the kernel does not see the source identity on the
 * proxy's upstream connection. An identity missing from `allowed` reaches nothing.
 */

export interface ProxyLbBackend {
  readonly ip: string;
  readonly port: number;
}

export interface ProxyLbService {
  /** `namespace/name` of the Service. */
  readonly name: string;
  /** The frontend address (ClusterIP or LoadBalancer address) and port the client dialled. */
  readonly ip: string;
  readonly port: number;
  readonly backends: readonly ProxyLbBackend[];
  /** Client identity -> indexes into `backends` it may reach. */
  readonly allowed: readonly { readonly identity: number; readonly backends: readonly number[] }[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isPort = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v > 0 && v < 65536;

/** The list if every entry has the expected shape (the snapshot check of protocol.ts); else undefined. */
export function lbServicesFrom(v: unknown): ProxyLbService[] | undefined {
  if (!Array.isArray(v)) return undefined;
  for (const s of v) {
    if (!isObj(s) || typeof s.name !== "string" || typeof s.ip !== "string" || !isPort(s.port))
      return undefined;
    if (!Array.isArray(s.backends) || !Array.isArray(s.allowed)) return undefined;
    const n = s.backends.length;
    if (!s.backends.every((b) => isObj(b) && typeof b.ip === "string" && isPort(b.port))) return undefined;
    const okAllowed = (a: unknown): boolean =>
      isObj(a) &&
      typeof a.identity === "number" &&
      Array.isArray(a.backends) &&
      a.backends.every((i) => typeof i === "number" && Number.isInteger(i) && i >= 0 && i < n);
    if (!s.allowed.every(okAllowed)) return undefined;
  }
  return v as ProxyLbService[];
}

export class LbServiceIndex {
  private readonly byFrontend = new Map<string, ProxyLbService>();
  private readonly allowed = new Map<ProxyLbService, Map<number, readonly ProxyLbBackend[]>>();

  constructor(services: readonly ProxyLbService[]) {
    for (const s of services) {
      this.byFrontend.set(`${s.ip}|${s.port}`, s);
      const m = new Map<number, readonly ProxyLbBackend[]>();
      for (const a of s.allowed)
        m.set(
          a.identity,
          a.backends.map((i) => s.backends[i] as ProxyLbBackend),
        );
      this.allowed.set(s, m);
    }
  }

  get size(): number {
    return this.byFrontend.size;
  }

  frontend(ip: string, port: number): ProxyLbService | undefined {
    return this.byFrontend.get(`${ip}|${port}`);
  }

  /** The backends `identity` may reach (empty: none, fail closed). */
  backendsFor(s: ProxyLbService, identity: number): readonly ProxyLbBackend[] {
    return this.allowed.get(s)?.get(identity) ?? [];
  }
}
