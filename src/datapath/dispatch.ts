/**
 * The dispatch maps: how a packet of the node's prerouting hook finds its
 * endpoint. Each endpoint has one element in each map that applies to it
 * (compile-endpoint.ts makes them with dispatchElements; incremental.ts,
 * stamp.ts and kernel-view.ts walk DISPATCH_MAPS).
 *
 *   egress_est4  iifname . ip saddr   : accept          established/related packets of an endpoint
 *   egress_est6  iifname . ip6 saddr  : accept          ... sent from its own address (IPv6)
 *   egress_ep    iifname              : jump e<id>_out  everything else an endpoint sends
 *   ingress_ep   oifname              : jump e<id>_in   (output hook: the node's own packets)
 *   ingress_ep4  ip daddr             : jump e<id>_in   new connections to an endpoint
 *   ingress_ep6  ip6 daddr            : jump e<id>_in
 *
 * The two egress_est maps are the established fast path (compile.ts pre_c,
 * first rules): one lookup does the dispatch and the anti-spoofing at once, so
 * an established packet of an endpoint meets one rule, not five (ND check,
 * dispatch lookup, jump, two source compares, ct state). A packet whose source
 * is not its interface's endpoint address misses, goes on to egress_ep and is
 * dropped by the endpoint chain's anti-spoofing as before: conntrack matches
 * the 5-tuple only (test/datapath/traffic.test.ts, "forged").
 */
import { parseAddr } from "../labels/cidr.js";
import { frozenElement, type FieldKind, type NftElement, type NftMap } from "./model.js";

/** An endpoint's elements, by the part of the endpoint they dispatch to. */
export interface DispatchElements {
  readonly egress: NftElement;
  readonly ingress: NftElement;
  readonly ingress4?: NftElement;
  readonly ingress6?: NftElement;
  readonly est4?: NftElement;
  readonly est6?: NftElement;
}

export type DispatchPart = keyof DispatchElements;

/** The dispatch maps, in the order the table declares them. */
export const DISPATCH_MAPS: readonly {
  readonly name: string;
  readonly part: DispatchPart;
  readonly fields: FieldKind[];
}[] = [
  { name: "egress_ep", part: "egress", fields: ["ifname"] },
  { name: "ingress_ep", part: "ingress", fields: ["ifname"] },
  { name: "ingress_ep4", part: "ingress4", fields: ["ipv4"] },
  { name: "ingress_ep6", part: "ingress6", fields: ["ipv6"] },
  { name: "egress_est4", part: "est4", fields: ["ifname", "ipv4"] },
  { name: "egress_est6", part: "est6", fields: ["ifname", "ipv6"] },
];

/**
 * The first rules of pre_c: an established or related packet from an endpoint's
 * interface with that endpoint's source address is accepted (the conntrack check
 * first: a new connection's packet fails it with one compare).
 */
export const ESTABLISHED_RULES: readonly string[] = [
  "meta nfproto ipv4 ct state established,related iifname . ip saddr vmap @egress_est4",
  "meta nfproto ipv6 ct state established,related iifname . ip6 saddr vmap @egress_est6",
];

/** One endpoint's dispatch elements (its id, interface and addresses already checked). */
export function dispatchElements(ep: {
  readonly id: number;
  readonly hostIfname: string;
  readonly ipv4?: string | undefined;
  readonly ipv6?: string | undefined;
}): DispatchElements {
  const v4 = ep.ipv4 === undefined ? undefined : parseAddr(ep.ipv4)?.value;
  const v6 = ep.ipv6 === undefined ? undefined : parseAddr(ep.ipv6)?.value;
  const into = `jump e${ep.id}_in`;
  return {
    egress: frozenElement({ key: [ep.hostIfname], value: `jump e${ep.id}_out` }),
    ingress: frozenElement({ key: [ep.hostIfname], value: into }),
    ...(v4 !== undefined
      ? {
          ingress4: frozenElement({ key: [{ lo: v4, hi: v4 }], value: into }),
          est4: frozenElement({ key: [ep.hostIfname, { lo: v4, hi: v4 }], value: "accept" }),
        }
      : {}),
    ...(v6 !== undefined
      ? {
          ingress6: frozenElement({ key: [{ lo: v6, hi: v6 }], value: into }),
          est6: frozenElement({ key: [ep.hostIfname, { lo: v6, hi: v6 }], value: "accept" }),
        }
      : {}),
  };
}

/** The dispatch maps holding these endpoints' elements (hash maps: one lookup, whatever the size). */
export function dispatchMaps(parts: Iterable<{ readonly dispatch: DispatchElements }>): NftMap[] {
  const maps = DISPATCH_MAPS.map((d): NftMap => ({
    name: d.name,
    fields: [...d.fields],
    valueType: "verdict",
    interval: false,
    elements: [],
  }));
  for (const p of parts)
    DISPATCH_MAPS.forEach((d, i) => {
      const e = p.dispatch[d.part];
      if (e) maps[i]?.elements.push(e);
    });
  return maps;
}
