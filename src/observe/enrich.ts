/**
 * NFLOG event -> Flow: decode the packet, read the log prefix, name both
 * sides and the policy that decided.
 *
 *   {prefix "mbr:d:e12:in:r7", packet, mark}
 *      --parseLogPrefix--> endpoint 12, ingress, rule 7
 *      --FlowLookup------> endpoint name/namespace/labels, peer identity, rule origin
 *      --> Flow {verdict DROPPED, drop_reason_desc POLICY_DENY, ingress_denied_by [...]}
 *
 * Reasons: a deny rule -> POLICY_DENY (181) with *_denied_by and `rule`;
 * default deny -> POLICY_DENIED (133), no policy; spoofed source ->
 * INVALID_SOURCE_IP (132); conntrack invalid -> INVALID_PACKET_DROPPED (134).
 *
 * A policy group's log (`mbr:d:g5:in:r7`: the chains endpoints with the same policy
 * share) names no endpoint: it is the packet's own address (destination on ingress,
 * source on egress), looked up with FlowLookup.endpointByIp.
 *
 * The host firewall's log (`mbr:d:h0:in:def`) names the node itself (identity 1).
 *
 * The mTLS tunnel's deliveries (from the pod gateway, marked with the source's identity) name
 * the source pod the agent learned for the tunnel's local port (FlowLookup.tunnelOrigin): its
 * address becomes IP.source, as the packet had left that pod.
 *
 * An allowed new connection (`mbr:a:e12:in:r3`, logged by the datapath as a
 * policy verdict) -> FORWARDED with *_allowed_by and `rule`; one handed to
 * the L7 proxy (`mbr:p:e12:in:r3`) -> REDIRECTED, likewise.
 *
 * Audit: the datapath does not emit audit logs yet. The prefix proposed for
 * them is the drop prefix with `u` for `d` (`mbr:u:e12:in:r7`, logged and
 * accepted); it is read here as verdict AUDIT.
 */
import { randomUUID } from "node:crypto";
import { parseLogPrefix, parseServicePrefix, type Direction, type DropReason } from "../abi/log-prefix.js";
import { IDENTITY_MASK, WORLD_IDENTITY } from "../abi/marks.js";
import {
  DROP_REASONS,
  EVENT_TYPE,
  POLICY_MATCH,
  type Endpoint,
  l4Ports,
  type Flow,
  type PolicyRefJSON,
} from "./flow.js";
import type { NflogEvent } from "./nflog-msg.js";
import { decodePacket, type DecodedPacket } from "./packet.js";
import { dropReason, RuleViews } from "./flow-policy.js";
import { newFlow } from "./flow-shell.js";
import { dropEventType } from "./drop-event.js";
import { EndpointViews } from "./endpoint-views.js";
import { ServiceTranslations } from "./service-xlate.js";

// What the enricher asks the agent (flow-lookups.ts), re-exported for its users.
import type { FlowLookup, RuleInfo } from "./flow-lookups.js";
export type { EndpointInfo, FlowLookup, MatchQuery, RuleInfo } from "./flow-lookups.js";

export interface FlowEnricherParams {
  lookup: FlowLookup;
  nodeName?: string;
  /** The node's labels as Hubble's node_labels (`key=value`, sorted); absent = none. */
  nodeLabels?: readonly string[];
}

export interface EnrichStats {
  /** Events whose prefix is not Membrane's (ignored). */
  foreign: number;
  /** Events whose packet could not be decoded (the flow is still produced, without IP/l4). */
  undecodable: number;
}

type FlowPrefix = {
  /** Undefined for a policy group's log (`g<n>`): the endpoint is then the packet's own address. */
  endpointId?: number | undefined;
  group?: number | undefined;
  /** The host firewall's log (`h0`): the endpoint is the node itself. */
  host?: true | undefined;
  direction: Direction;
  reason: DropReason;
  allowed: boolean;
  authenticated?: true | undefined;
  /** Allowed at L4 and handed to the proxy (`mbr:p:`). */
  redirected?: true;
  audit: boolean;
};

/** Reads the prefix: Membrane's drop or allow prefix (parseLogPrefix), or the audit form (`mbr:u:`). */
export function parseFlowPrefix(text: string): FlowPrefix | undefined {
  const audit = text.startsWith("mbr:u:");
  const p = parseLogPrefix(audit ? `mbr:d:${text.slice(6)}` : text);
  return p === undefined ? undefined : { ...p, audit };
}

/** The node itself, as Hubble names it (identity 1, reserved:host). */
const hostEndpoint = (node: string | undefined): Endpoint =>
  node === undefined
    ? { ID: 0, identity: 1, labels: ["reserved:host"] }
    : { ID: 0, identity: 1, labels: ["reserved:host"], node_name: node };

let lastSecond = NaN;
let lastSecondIso = "";

/** ISO 8601 with microseconds when the timestamp has them. */
export function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  const sec = Math.floor(whole / 1000);
  // Most events of a burst share their second: format it once.
  if (sec !== lastSecond) {
    lastSecond = sec;
    lastSecondIso = new Date(sec * 1000).toISOString().slice(0, 19);
  }
  const milli = String(whole - sec * 1000).padStart(3, "0");
  const micros = Math.round((ms - whole) * 1000);
  return micros === 0
    ? `${lastSecondIso}.${milli}Z`
    : `${lastSecondIso}.${milli}${String(micros).padStart(3, "0")}Z`;
}

const POLICY_VERDICT_EVENT: Flow["event_type"] = Object.freeze({ type: EVENT_TYPE.policyVerdict });
/** Turns NFLOG events into flows. Holds no state beyond counters. */
export class FlowEnricher {
  private readonly lookup: FlowLookup;
  private readonly nodeName: string | undefined;
  private readonly nodeLabels: string[] | undefined;
  readonly stats: EnrichStats = { foreign: 0, undecodable: 0 };
  /** Parsed prefixes: a node has few (endpoints x directions x reasons); bounded anyway. */
  private readonly prefixes = new Map<string, FlowPrefix | undefined>();
  /** The frontends clients dialled, from the LB table's log (service-xlate.ts). */
  private readonly dialled = new ServiceTranslations();
  /** Per rule and per endpoint, what flows show of it, built once (flows share it: read-only). */
  private readonly rules = new RuleViews();
  private readonly endpoints = new EndpointViews();

  constructor(params: FlowEnricherParams) {
    this.lookup = params.lookup;
    this.nodeName = params.nodeName;
    this.nodeLabels = params.nodeLabels?.length ? [...params.nodeLabels] : undefined;
  }

  /** Hubble's policy_match_type of a policy verdict (see FlowLookup.matchTypeOf). */
  private matchType(
    me: Endpoint,
    ingress: boolean,
    peer: Endpoint,
    l4: Flow["l4"],
    rule: RuleInfo | undefined,
  ): number {
    const proto =
      l4 === undefined
        ? 0
        : "TCP" in l4
          ? 6
          : "UDP" in l4
            ? 17
            : "SCTP" in l4
              ? 132
              : "ICMPv4" in l4
                ? 1
                : 58;
    const port =
      l4 === undefined
        ? 0
        : "ICMPv4" in l4
          ? l4.ICMPv4.type
          : "ICMPv6" in l4
            ? l4.ICMPv6.type
            : (l4Ports(l4)?.destination_port ?? 0);
    const m =
      me.ID !== undefined && me.ID !== 0 && proto !== 0
        ? this.lookup.matchTypeOf?.({
            endpointId: me.ID,
            ingress,
            remoteIdentity: peer.identity,
            proto,
            port,
          })
        : undefined;
    return POLICY_MATCH[m ?? rule?.matchType ?? "none"];
  }

  /** Cluster mode: both sides name their node (a peer's from nodeOfIp). */
  private get localNode(): string | undefined {
    return this.lookup.nodeOfIp !== undefined ? this.nodeName : undefined;
  }

  private unknown(id: number): Endpoint {
    const node = this.localNode;
    return node === undefined ? { ID: id, identity: 0 } : { ID: id, identity: 0, node_name: node };
  }

  private local(id: number): Endpoint {
    const ep = this.lookup.endpointById(id);
    if (ep === undefined) return this.unknown(id);
    return this.endpoints.get(id, ep.identity, ep.namespace, ep.labels, ep.name, this.localNode);
  }

  /** The local endpoint holding `ip`; unknown (ID 0, identity 0) when none does. */
  private byAddress(ip: string | undefined): Endpoint {
    const ep = ip === undefined ? undefined : this.lookup.endpointByIp?.(ip);
    if (ep === undefined) return this.unknown(0);
    return this.endpoints.get(ep.id, ep.identity, ep.namespace, ep.labels, ep.name, this.localNode);
  }

  private remote(ip: string | undefined, mark: number | undefined): Endpoint {
    const fromMark = mark === undefined ? 0 : mark & IDENTITY_MASK;
    const identity =
      fromMark !== 0
        ? fromMark
        : ((ip === undefined ? undefined : this.lookup.ipIdentity(ip)) ?? WORLD_IDENTITY);
    const ep = ip === undefined ? undefined : this.lookup.endpointByIp?.(ip);
    // A local pod: its own labels, with the identity the packet carried.
    if (ep !== undefined)
      return this.endpoints.get(ep.id, identity, ep.namespace, ep.labels, ep.name, this.localNode);
    const labels = this.lookup.identityById(identity)?.labels;
    const node = ip === undefined ? undefined : this.lookup.nodeOfIp?.(ip);
    return this.endpoints.peer(identity, labels, node);
  }

  /**
   * Hubble's source_service (the source is a frontend: a reply) and destination_service (the
   * frontend the client dialled, from the LB table's log; else the destination is one).
   */
  private services(flow: Flow, proto: number, atMs: number): void {
    const ports = l4Ports(flow.l4);
    const ip = flow.IP;
    const at = this.lookup.serviceAt;
    if (ports === undefined || ip === undefined || at === undefined) return;
    const src = at(ip.source, proto, ports.source_port);
    if (src !== undefined) flow.source_service = src;
    const d = this.dialled.dialled(ip.source, proto, ports.source_port, atMs);
    const dst = d ? at(d.ip, d.proto, d.port, d.nodePort) : at(ip.destination, proto, ports.destination_port);
    if (dst !== undefined) flow.destination_service = dst;
  }

  /**
   * --encryption mtls-tunnel, receiving side: the source pod of a TCP connection the node's tunnel
   * opened to a local pod, when the agent knows it and it holds the identity the packet's mark
   * carries (the certificate's, which policy judged).
   */
  private tunnelOrigin(
    pkt: Extract<DecodedPacket, { ok: true }>,
    mark: number | undefined,
  ): { ip: string } | undefined {
    const id = mark === undefined ? 0 : mark & IDENTITY_MASK;
    const l4 = pkt.l4;
    if (id === 0 || this.lookup.tunnelOrigin === undefined || l4 === undefined || !("TCP" in l4))
      return undefined;
    const o = this.lookup.tunnelOrigin(pkt.IP.destination, l4.TCP.destination_port, l4.TCP.source_port);
    return o !== undefined && o.identity === id ? o : undefined;
  }

  /** The flow of one event; undefined when the prefix is not Membrane's. */
  enrich(ev: NflogEvent): Flow | undefined {
    let pre = this.prefixes.get(ev.prefix);
    if (pre === undefined && !this.prefixes.has(ev.prefix)) {
      if (this.prefixes.size >= 65536) this.prefixes.clear();
      pre = parseFlowPrefix(ev.prefix);
      this.prefixes.set(ev.prefix, pre);
    }
    if (pre === undefined) {
      // The LB table's log of a new service connection: not a flow, the frontend its verdicts name.
      const svc = parseServicePrefix(ev.prefix);
      if (svc === undefined || !this.dialled.note(ev.packet, svc === "nodePort", ev.timestampMs))
        this.stats.foreign++;
      return undefined;
    }
    const pkt = decodePacket(ev.packet);
    if (!pkt.ok) this.stats.undecodable++;
    const ingress = pre.direction === "in";
    // The mTLS tunnel delivers from the pod gateway under the source's identity: name the source pod.
    const origin = ingress && pkt.ok ? this.tunnelOrigin(pkt, ev.mark) : undefined;
    const peerIp = origin?.ip ?? (pkt.ok ? (ingress ? pkt.IP.source : pkt.IP.destination) : undefined);
    // A group's log (shared policy chains) names no endpoint: it is the packet's own address,
    // the source on egress (checked against the endpoint's by its chain), the destination on ingress.
    const me =
      pre.endpointId !== undefined
        ? this.local(pre.endpointId)
        : pre.host
          ? hostEndpoint(this.localNode)
          : this.byAddress(pkt.ok ? (ingress ? pkt.IP.destination : pkt.IP.source) : undefined);
    const peer = this.remote(peerIp, ev.mark);

    const r = pre.reason;
    const info = r.kind === "rule" && r.ruleId !== 0 ? this.lookup.ruleById(r.ruleId) : undefined;
    const rule = info === undefined ? undefined : this.rules.get(r.kind === "rule" ? r.ruleId : 0, info);
    const isPolicy = r.kind === "rule" || r.kind === "default";
    const verdict = pre.redirected
      ? "REDIRECTED"
      : pre.allowed
        ? "FORWARDED"
        : pre.audit
          ? "AUDIT"
          : "DROPPED";
    const drop = pre.allowed ? undefined : dropReason(r, rule, ingress);
    const detail = drop === undefined ? undefined : pkt.ok ? drop.detail : `${drop.detail} (packet undecodable: ${pkt.error})`; // prettier-ignore
    const code = drop === undefined ? 0 : DROP_REASONS[drop.reason].code;

    // Built by assignment rather than spreads: this runs per packet and spreads cost
    // an allocation each. Property order follows Hubble's JSON.
    const flow = newFlow(isoTime(ev.timestampMs), randomUUID(), verdict);
    if (verdict === "DROPPED" && drop !== undefined) {
      flow.drop_reason = code;
      flow.drop_reason_desc = drop.reason;
    }
    if (pkt.ok) {
      flow.IP = origin === undefined ? pkt.IP : { ...pkt.IP, source: origin.ip };
      // Through the tunnel: the peer is behind a WireGuard peer, or (mTLS tunnel) TCP to a tunnel peer's pod
      // (never a strict drop: it did not go through).
      const tcp = pkt.l4 !== undefined && "TCP" in pkt.l4;
      if (
        peerIp !== undefined &&
        r.kind !== "unencrypted" &&
        this.lookup.encryptedPeer?.(peerIp, tcp, peer.identity) === true
      )
        flow.IP.encrypted = true;
      if (pkt.l4 !== undefined) flow.l4 = pkt.l4;
    }
    flow.source = ingress ? peer : me;
    flow.destination = ingress ? me : peer;
    flow.Type = "L3_L4";
    if (this.nodeName !== undefined) flow.node_name = this.nodeName;
    if (pkt.ok && this.lookup.namesOfIp !== undefined) {
      const src = this.lookup.namesOfIp(pkt.IP.source);
      const dst = this.lookup.namesOfIp(pkt.IP.destination);
      if (src !== undefined) flow.source_names = [...src];
      if (dst !== undefined) flow.destination_names = [...dst];
    }
    flow.event_type = isPolicy ? POLICY_VERDICT_EVENT : dropEventType(code);
    if (pkt.ok && this.lookup.serviceAt !== undefined) this.services(flow, pkt.proto, ev.timestampMs);
    flow.traffic_direction = ingress ? "INGRESS" : "EGRESS";
    // Hubble's auth_type: the rule that allowed it requires mutual authentication (ours: SPIFFE
    // SVIDs through the agent, which Cilium names SPIRE), or the drop is for want of one.
    if (pre.authenticated === true || r.kind === "auth") flow.auth_type = "SPIRE";
    if (this.nodeLabels !== undefined) flow.node_labels = this.nodeLabels;
    // The kind of policy entry that decided (an allow, or a deny rule); default deny matched none.
    if (isPolicy)
      flow.policy_match_type =
        r.kind === "rule" ? this.matchType(me, ingress, peer, flow.l4, rule?.info) : POLICY_MATCH.none;
    // Policy verdicts are logged before conntrack knows the connection: always its first packet.
    if (r.kind !== "invalid") flow.is_reply = false;
    if (rule !== undefined) {
      const by = rule.by as PolicyRefJSON[];
      if (pre.allowed) {
        if (ingress) flow.ingress_allowed_by = by;
        else flow.egress_allowed_by = by;
      } else if (ingress) flow.ingress_denied_by = by;
      else flow.egress_denied_by = by;
    }
    flow.Summary = pkt.ok ? pkt.summary : `invalid packet: ${pkt.error}`;
    if (detail !== undefined)
      flow.drop_reason_detail = pre.audit ? `audit, would be dropped: ${detail}` : detail;
    if (rule !== undefined) flow.rule = rule.rule;
    return flow;
  }
}
