/**
 * Random worlds for the property test, as plain data so fast-check can
 * shrink and print them (build.ts turns them into policies, an engine and a
 * reference world).
 *
 *   fc arbitrary -> WorldSpec {config, namespaces, endpoints, policies, queries}
 */
import fc from "fast-check";
import type { EngineConfig } from "../../../src/policy/query.js";
import { ENTITIES, type Entity, type Protocol } from "../../../src/policy/types.js";
import type { Operator } from "../../../src/labels/selector.js";
import { containsPrefix, parsePrefix, type Prefix } from "../../../src/labels/cidr.js";

export const NAMESPACES = ["ns0", "ns1", "ns2", "ns3"] as const;
export const PREFIXES = [
  "0.0.0.0/0",
  "10.0.0.0/8",
  "10.1.0.0/16",
  "10.1.2.0/24",
  "10.1.2.3/32",
  "10.1.2.48/28",
  "192.168.0.0/16",
  "::/0",
  "fd00::/8",
  "fd00:1::/32",
] as const;
export const OUTSIDE_IPS = [
  "10.1.2.3",
  "10.1.2.4",
  "10.1.9.9",
  "10.9.9.9",
  "192.168.1.1",
  "8.8.8.8",
  "fd00:1::5",
  "fd00:2::5",
  "2001:db8::1",
] as const;
/** Inside 10.1.2.48/28: CIDR rules must still not select them. */
export const REMOTE_NODE_IP = "10.1.2.50";
export const APISERVER_IP = "10.1.2.51";
const L4_PORTS = [1, 22, 53, 80, 85, 90, 91, 443, 8000, 8050, 8100, 8101, 65535];
const ICMP_TYPES = [0, 3, 8, 128, 129];
const PORT_RANGES: readonly [number, number][] = [
  [0, 0],
  [53, 53],
  [80, 80],
  [80, 90],
  [443, 443],
  [8000, 8100],
  [1, 65535],
];

export interface ReqSpec {
  source: string;
  key: string;
  op: Operator;
  values: string[];
}
export type PeerSpec =
  | { kind: "endpoints"; reqs: ReqSpec[] }
  | { kind: "entity"; entity: Entity }
  | { kind: "cidr"; cidr: string; except: string[] }
  | { kind: "all" };
export type L4Spec =
  | { kind: "l3" }
  | { kind: "ports"; rules: { protocol: Protocol; range: [number, number] }[][] }
  | { kind: "icmps"; fields: { family: "IPv4" | "IPv6"; type: number }[] };
export interface ElemSpec {
  peers: PeerSpec[];
  l4: L4Spec;
}
export interface RuleSpec {
  subject: ReqSpec[];
  selectsNodes: boolean;
  ingress: ElemSpec[];
  ingressDeny: ElemSpec[];
  egress: ElemSpec[];
  egressDeny: ElemSpec[];
  enableDefaultDeny: { ingress: boolean; egress: boolean };
}
export type SideSpec = { kind: "ep"; i: number } | { kind: "host" } | { kind: "ip"; ip: string };
export interface QuerySpec {
  src: SideSpec;
  dst: SideSpec;
  proto: 6 | 17 | 132 | 1 | 58;
  l4port: number;
  icmpType: number;
}
export interface WorldSpec {
  config: Pick<EngineConfig, "policyEnforcementMode" | "allowLocalhost" | "cluster">;
  namespaces: { env?: "prod" | "dev" }[];
  endpoints: { ns: number; app?: "a" | "b" | "c"; tier?: "x" | "y" }[];
  policies: RuleSpec[][];
  policiesFirst: boolean;
  queries: QuerySpec[];
}

// ---- arbitraries -----------------------------------------------------------

const valueReq = (key: string, values: string[], sources: string[]): fc.Arbitrary<ReqSpec> =>
  fc.record({
    source: fc.constantFrom(...sources),
    key: fc.constant(key),
    op: fc.constantFrom<Operator>("In", "NotIn"),
    values: fc.subarray(values, { minLength: 1 }),
  });
const existsReq = (keys: string[], sources: string[]): fc.Arbitrary<ReqSpec> =>
  fc.record({
    source: fc.constantFrom(...sources),
    key: fc.constantFrom(...keys),
    op: fc.constantFrom<Operator>("Exists", "DoesNotExist"),
    values: fc.constant([]),
  });

export const reqArb: fc.Arbitrary<ReqSpec> = fc.oneof(
  { arbitrary: valueReq("app", ["a", "b", "c"], ["any", "k8s"]), weight: 4 },
  { arbitrary: valueReq("tier", ["x", "y"], ["any", "k8s"]), weight: 2 },
  { arbitrary: existsReq(["app", "tier"], ["any", "k8s"]), weight: 2 },
  { arbitrary: valueReq("io.kubernetes.pod.namespace", [...NAMESPACES], ["k8s"]), weight: 3 },
  { arbitrary: valueReq("io.cilium.k8s.namespace.labels.env", ["prod", "dev"], ["k8s"]), weight: 1 },
  { arbitrary: existsReq(["io.kubernetes.pod.namespace"], ["k8s", "any"]), weight: 1 },
  { arbitrary: existsReq(["host", "world", "remote-node"], ["reserved"]), weight: 1 },
);

const cidrArb: fc.Arbitrary<PeerSpec> = fc.constantFrom(...PREFIXES).chain((cidr) => {
  const outer = parsePrefix(cidr) as Prefix;
  const inner: string[] = PREFIXES.filter((p) => {
    const q = parsePrefix(p) as Prefix;
    return q.bits > outer.bits && containsPrefix(outer, q);
  });
  const except: fc.Arbitrary<string[]> = fc.subarray(inner, { maxLength: Math.min(2, inner.length) });
  return fc.record({ kind: fc.constant("cidr" as const), cidr: fc.constant<string>(cidr), except });
});

export const peerArb: fc.Arbitrary<PeerSpec> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("endpoints" as const),
      reqs: fc.array(reqArb, { maxLength: 3 }),
    }),
    weight: 6,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("entity" as const), entity: fc.constantFrom(...ENTITIES) }),
    weight: 3,
  },
  { arbitrary: cidrArb, weight: 3 },
  { arbitrary: fc.constant({ kind: "all" as const }), weight: 1 },
);

const l4Arb: fc.Arbitrary<L4Spec> = fc.oneof(
  { arbitrary: fc.constant({ kind: "l3" as const }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("ports" as const),
      rules: fc.array(
        fc.array(
          fc.record({
            protocol: fc.constantFrom<Protocol>("TCP", "UDP", "SCTP", "ANY"),
            range: fc.constantFrom(...PORT_RANGES),
          }),
          { minLength: 1, maxLength: 3 },
        ),
        { minLength: 1, maxLength: 2 },
      ),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("icmps" as const),
      fields: fc.array(
        fc.record({
          family: fc.constantFrom<"IPv4" | "IPv6">("IPv4", "IPv6"),
          type: fc.constantFrom(0, 8, 128, 129),
        }),
        { minLength: 1, maxLength: 2 },
      ),
    }),
    weight: 1,
  },
);

export const elemArb: fc.Arbitrary<ElemSpec> = fc.record({
  peers: fc.oneof(
    { arbitrary: fc.array(peerArb, { minLength: 1, maxLength: 3 }), weight: 9 },
    { arbitrary: fc.constant<PeerSpec[]>([]), weight: 1 },
  ),
  l4: l4Arb,
});

const elems = (max: number): fc.Arbitrary<ElemSpec[]> => fc.array(elemArb, { maxLength: max });

export const ruleArb: fc.Arbitrary<RuleSpec> = fc.record({
  subject: fc.array(reqArb, { maxLength: 2 }),
  selectsNodes: fc.oneof(
    { arbitrary: fc.constant(false), weight: 9 },
    { arbitrary: fc.constant(true), weight: 1 },
  ),
  ingress: elems(3),
  ingressDeny: fc.oneof(
    { arbitrary: fc.constant<ElemSpec[]>([]), weight: 2 },
    { arbitrary: elems(2), weight: 1 },
  ),
  egress: elems(3),
  egressDeny: fc.oneof(
    { arbitrary: fc.constant<ElemSpec[]>([]), weight: 2 },
    { arbitrary: elems(2), weight: 1 },
  ),
  enableDefaultDeny: fc.record({
    ingress: fc.oneof(
      { arbitrary: fc.constant(true), weight: 4 },
      { arbitrary: fc.constant(false), weight: 1 },
    ),
    egress: fc.oneof(
      { arbitrary: fc.constant(true), weight: 4 },
      { arbitrary: fc.constant(false), weight: 1 },
    ),
  }),
});

const sideArb: fc.Arbitrary<SideSpec> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("ep" as const), i: fc.nat(7) }), weight: 6 },
  { arbitrary: fc.constant({ kind: "host" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("ip" as const),
      ip: fc.constantFrom(...OUTSIDE_IPS, REMOTE_NODE_IP, APISERVER_IP),
    }),
    weight: 3,
  },
);

export const queryArb: fc.Arbitrary<QuerySpec> = fc.record({
  src: sideArb,
  dst: sideArb,
  proto: fc.constantFrom<6 | 17 | 132 | 1 | 58>(6, 6, 17, 132, 1, 58),
  l4port: fc.constantFrom(...L4_PORTS),
  icmpType: fc.constantFrom(...ICMP_TYPES),
});

export const worldArb: fc.Arbitrary<WorldSpec> = fc.record({
  config: fc.record({
    policyEnforcementMode: fc.oneof(
      { arbitrary: fc.constant("default" as const), weight: 6 },
      { arbitrary: fc.constant("always" as const), weight: 1 },
      { arbitrary: fc.constant("never" as const), weight: 1 },
    ),
    allowLocalhost: fc.constantFrom<"always" | "policy">("always", "policy"),
    cluster: fc.constantFrom("default", "c1"),
  }),
  namespaces: fc.array(
    fc.record({ env: fc.constantFrom<"prod" | "dev">("prod", "dev") }, { requiredKeys: [] }),
    {
      minLength: 2,
      maxLength: 4,
    },
  ),
  endpoints: fc.array(
    fc.record(
      {
        ns: fc.nat(3),
        app: fc.constantFrom<"a" | "b" | "c">("a", "b", "c"),
        tier: fc.constantFrom<"x" | "y">("x", "y"),
      },
      { requiredKeys: ["ns"] },
    ),
    { minLength: 3, maxLength: 8 },
  ),
  policies: fc.array(fc.array(ruleArb, { minLength: 1, maxLength: 2 }), { maxLength: 4 }),
  policiesFirst: fc.boolean(),
  // size "max": about 15 queries per world on average instead of fast-check's small default.
  queries: fc.array(queryArb, { minLength: 1, maxLength: 30, size: "max" }),
});
