/**
 * Gateways -> the listeners Membrane serves, with each listener's conditions:
 *
 *   class ours? --no--> ignored (no status: another controller's)
 *   address usable? protocol HTTP/HTTPS? certificates resolved (kind Secret,
 *   ReferenceGrant across namespaces, files present and well-formed)?
 *   same port and address as an earlier listener: same protocol and a
 *   distinct hostname share it (or, for HTTP, the same hostname on another
 *   Gateway: served together), otherwise Conflicted (the older keeps it)
 *
 * Listener conditions: Accepted, ResolvedRefs, Programmed, Conflicted; a
 * listener is served only when all say so.
 *
 * A Gateway's address: the one its spec.addresses names (one the node
 * serves gateways on), else its own from the agent (`own`: the LoadBalancer
 * pool; none free: Programmed False, AddressNotAssigned), else the node's
 * default gateway address, shared with every other such Gateway.
 *
 * On a dual-stack node, a Gateway on the node's default addresses is served
 * on the other family's too (dual-stack.ts); a listener gives its port up on
 * that second address where a served listener holds it with another
 * protocol or the same hostname (a Gateway naming that address), and says so:
 * Conflicted True, served on the first address alone (`yielded`).
 */
import { GATEWAY_GROUP, type Gateway, type Listener, type ReferenceGrant } from "./model.js";
import { servedAddresses } from "./dual-stack.js";
import { refPermitted } from "./refs.js";
import { conditionMaker, type Condition } from "./status.js";

export interface ListenerInput {
  readonly gateways: readonly Gateway[];
  readonly grants: readonly ReferenceGrant[];
  /** Addresses this node can serve gateways on; the first is the default. */
  readonly addresses: readonly string[];
  /** `namespace/name` -> the Gateway's own addresses (it names none); empty: none could be given. */
  readonly own?: Readonly<Record<string, readonly string[]>>;
  /** Why `own` is empty when the pool is not full: the store refused the reservation (the status says it). */
  readonly ownRefused?: string;
  /** Why the secret's tls.crt/tls.key cannot be used; undefined when they can. */
  readonly certificateProblem: (namespace: string, name: string) => string | undefined;
  readonly now: string;
}

/** One Gateway listener as checked. */
export interface CheckedListener {
  readonly gateway: Gateway;
  readonly listener: Listener;
  readonly address: string;
  /** The Gateway's own addresses (listeners.ts header), primary first; absent: it has none. */
  readonly own?: readonly string[];
  readonly served: boolean;
  /** Its Gateway's second address, where another listener holds this port (header): not served there. */
  readonly yielded?: readonly string[];
  readonly certificates: readonly { readonly namespace: string; readonly name: string }[];
  readonly supportedKinds: readonly { readonly group: string; readonly kind: string }[];
  readonly conditions: readonly Condition[];
}

export interface CheckedGateway {
  readonly gateway: Gateway;
  readonly address: string | undefined;
  readonly own?: readonly string[];
  readonly listeners: readonly CheckedListener[];
  readonly conditions: readonly Condition[];
}

const ROUTE_KINDS = [
  { group: GATEWAY_GROUP, kind: "HTTPRoute" },
  { group: GATEWAY_GROUP, kind: "GRPCRoute" },
];

export function checkGateways(inp: ListenerInput): CheckedGateway[] {
  const taken = new Map<string, { protocol: string; hostnames: Map<string, Set<string>> }>();
  const checked = [...inp.gateways].sort(olderFirst).map((gw) => {
    const cond = conditionMaker(gw.meta.generation, inp.now);
    const wanted = gw.addresses.map((a) => a.value);
    const own = wanted.length === 0 ? inp.own?.[`${gw.meta.namespace}/${gw.meta.name}`] : undefined;
    const address =
      own !== undefined
        ? own[0]
        : wanted.length === 0
          ? inp.addresses[0]
          : wanted.find((a) => inp.addresses.includes(a));
    const badAddress = wanted.find((a) => !inp.addresses.includes(a));
    const mine = own !== undefined && own.length > 0 ? { own } : {};
    const listeners = gw.listeners.map((l) => ({
      ...checkListener(inp, gw, l, address ?? "", taken),
      ...mine,
    }));
    const anyServed = listeners.some((l) => l.served);
    const conditions: Condition[] = [
      listeners.some((l) => l.conditions.some((c) => c.type === "Accepted" && c.status === "True"))
        ? cond("Accepted", true, "Accepted", "Gateway accepted by Membrane")
        : cond("Accepted", false, "ListenersNotValid", "no listener is valid"),
      own !== undefined && own.length === 0
        ? cond("Programmed", false, "AddressNotAssigned", inp.ownRefused ?? "no address of the LoadBalancer pool (--lb-pool) is free for this Gateway") // prettier-ignore
        : badAddress !== undefined || address === undefined
          ? cond(
              "Programmed",
              false,
              "AddressNotUsable",
              `address ${badAddress ?? "(none)"} is not one this node serves gateways on (${inp.addresses.join(", ") || "none configured"})`,
            )
          : anyServed
            ? cond("Programmed", true, "Programmed", `served on ${address}`)
            : cond("Programmed", false, "Invalid", "no listener could be programmed"),
    ];
    const usable = badAddress === undefined && address !== undefined;
    return {
      gateway: gw,
      address: usable ? address : undefined,
      ...mine,
      listeners: usable ? listeners : listeners.map((l) => ({ ...l, served: false })),
      conditions,
    };
  });
  return yieldSecondAddresses(checked, inp);
}

/** The ports listeners give up on their Gateway's second address (header), said as Conflicted. */
function yieldSecondAddresses(gws: CheckedGateway[], inp: ListenerInput): CheckedGateway[] {
  const on = gws.flatMap((g) => g.listeners).filter((l) => l.served);
  const holder = (l: CheckedListener, a: string): CheckedListener | undefined =>
    on.find(
      (o) =>
        o.address === a &&
        o.listener.port === l.listener.port &&
        (o.listener.protocol !== l.listener.protocol ||
          (o.listener.hostname ?? "") === (l.listener.hostname ?? "")),
    );
  const mark = (l: CheckedListener): CheckedListener => {
    if (!l.served) return l;
    const lost = servedAddresses(l, inp.addresses)
      .slice(1)
      .flatMap((a) => {
        const h = holder(l, a);
        return h ? [{ a, h }] : [];
      });
    const first = lost[0];
    if (first === undefined) return l;
    const reason =
      first.h.listener.protocol !== l.listener.protocol ? "ProtocolConflict" : "HostnameConflict";
    const by = `${first.h.gateway.meta.namespace}/${first.h.gateway.meta.name}/${first.h.listener.name}`;
    const c = conditionMaker(l.gateway.meta.generation, inp.now)("Conflicted", true, reason, `port ${l.listener.port} on ${lost.map((x) => x.a).join(", ")} is held by listener ${by}: served on ${l.address} alone`); // prettier-ignore
    return {
      ...l,
      yielded: lost.map((x) => x.a),
      conditions: l.conditions.map((x) => (x.type === "Conflicted" ? c : x)),
    };
  };
  return gws.map((g) => ({ ...g, listeners: g.listeners.map(mark) }));
}

function checkListener(
  inp: ListenerInput,
  gw: Gateway,
  l: Listener,
  address: string,
  taken: Map<string, { protocol: string; hostnames: Map<string, Set<string>> }>,
): CheckedListener {
  const cond = conditionMaker(gw.meta.generation, inp.now);
  const out: Condition[] = [];
  const supportedKinds =
    l.kinds.length === 0
      ? ROUTE_KINDS
      : l.kinds.filter((k) => ROUTE_KINDS.some((r) => r.group === k.group && r.kind === k.kind));
  const base = { gateway: gw, listener: l, address, supportedKinds };
  if (l.protocol !== "HTTP" && l.protocol !== "HTTPS") {
    return {
      ...base,
      served: false,
      certificates: [],
      conditions: [
        cond(
          "Accepted",
          false,
          "UnsupportedProtocol",
          `protocol ${l.protocol} is not served (HTTP, HTTPS are)`,
        ),
        cond("ResolvedRefs", true, "ResolvedRefs", "nothing to resolve"),
        cond("Programmed", false, "Invalid", "listener not accepted"),
        cond("Conflicted", false, "NoConflicts", "no conflicts"),
      ],
    };
  }
  let refsOk = true;
  let refReason = "ResolvedRefs";
  let refMessage = "all references resolved";
  if (supportedKinds.length < l.kinds.length) {
    refsOk = false;
    refReason = "InvalidRouteKinds";
    refMessage = "only HTTPRoute and GRPCRoute can attach to an HTTP or HTTPS listener";
  }
  const certificates: { namespace: string; name: string }[] = [];
  if (l.protocol === "HTTPS") {
    if (l.certificateRefs.length === 0) {
      refsOk = false;
      refReason = "InvalidCertificateRef";
      refMessage = "an HTTPS listener needs tls.certificateRefs";
    }
    for (const ref of l.certificateRefs) {
      const namespace = ref.namespace ?? gw.meta.namespace;
      const bad = (reason: string, message: string): void => {
        if (refsOk) [refReason, refMessage] = [reason, message];
        refsOk = false;
      };
      if (ref.group !== "" || ref.kind !== "Secret")
        bad("InvalidCertificateRef", `${ref.kind} ${ref.name} is not a Secret`);
      else if (
        !refPermitted(
          inp.grants,
          { group: GATEWAY_GROUP, kind: "Gateway", namespace: gw.meta.namespace },
          { group: "", kind: "Secret", name: ref.name, namespace },
        )
      )
        bad(
          "RefNotPermitted",
          `no ReferenceGrant in ${namespace} lets Gateways of ${gw.meta.namespace} use Secret ${ref.name}`,
        );
      else {
        const why = inp.certificateProblem(namespace, ref.name);
        if (why !== undefined) bad("InvalidCertificateRef", `Secret ${namespace}/${ref.name}: ${why}`);
        else certificates.push({ namespace, name: ref.name });
      }
    }
  }
  out.push(cond("Accepted", true, "Accepted", "listener accepted"));
  out.push(cond("ResolvedRefs", refsOk, refReason, refMessage));
  const key = `${address}:${l.port}`;
  const host = l.hostname ?? "";
  const prior = taken.get(key);
  const gwKey = `${gw.meta.namespace}/${gw.meta.name}`;
  // Gateways share the node's address: HTTP listeners of different Gateways with the same hostname
  // are served together (their routes ordered as one set), as separate load balancers would serve
  // them; within one Gateway, or for HTTPS (whose certificate would be ambiguous), it is a conflict.
  const holders = prior?.hostnames.get(host);
  let conflict: string | undefined;
  if (prior && prior.protocol !== l.protocol) conflict = "ProtocolConflict";
  else if (holders && (holders.has(gwKey) || l.protocol === "HTTPS")) conflict = "HostnameConflict";
  out.push(
    conflict
      ? cond(
          "Conflicted",
          true,
          conflict,
          `port ${l.port} is already served by another listener with ${conflict === "ProtocolConflict" ? "another protocol" : "the same hostname"}`,
        )
      : cond("Conflicted", false, "NoConflicts", "no conflicts"),
  );
  const served = refsOk && conflict === undefined && address !== "";
  out.push(
    served
      ? cond("Programmed", true, "Programmed", `serving ${l.protocol} on ${address}:${l.port}`)
      : cond("Programmed", false, "Invalid", conflict ? "listener conflicts with another" : address === "" ? "the Gateway has no address to serve it on" : refMessage), // prettier-ignore
  );
  if (served) {
    const entry = prior ?? { protocol: l.protocol, hostnames: new Map<string, Set<string>>() };
    entry.hostnames.set(host, (entry.hostnames.get(host) ?? new Set<string>()).add(gwKey));
    taken.set(key, entry);
  }
  return { ...base, served, certificates, conditions: out };
}

export function olderFirst(
  a: { meta: { creationTimestamp?: string; namespace: string; name: string } },
  b: typeof a,
): number {
  const ta = a.meta.creationTimestamp ?? "";
  const tb = b.meta.creationTimestamp ?? "";
  if (ta !== tb) return ta === "" ? 1 : tb === "" ? -1 : ta < tb ? -1 : 1;
  const ka = `${a.meta.namespace}/${a.meta.name}`;
  const kb = `${b.meta.namespace}/${b.meta.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
