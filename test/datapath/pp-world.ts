/**
 * pp: the random world of the incremental-datapath property test
 * (pp-incremental.test.ts): a catalogue of policies and remote prefixes, the
 * change operations fast-check draws, and the World that applies them to a
 * real PolicyEngine and builds the DatapathState exactly as the agent does
 * (one DesiredBuilder for the whole sequence, so its caches are exercised).
 */
import fc from "fast-check";
import { DesiredBuilder, type LocalEndpoint } from "../../src/agent/desired.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { parsePrefix } from "../../src/labels/cidr.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const PROXY = { ipv4: "10.0.0.254", l7Port: 15001, dnsPort: 15053, gid: 1337 };
const APPS = ["a", "b", "c"] as const;
const SLOTS = 5;

const cnp = (name: string, spec: string): string =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;

/** The policy catalogue: L3/L4, deny, CIDR peers with except, port ranges, L7 (HTTP, DNS) redirects. */
const POLICIES: readonly string[] = [
  cnp(
    "p0",
    `  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p1",
    `  endpointSelector: {matchLabels: {app: a}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {app: c}}]}]\n`,
  ),
  cnp(
    "p2",
    `  endpointSelector: {matchLabels: {app: b}}\n  egress: [{toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p3",
    `  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p4",
    `  endpointSelector: {matchLabels: {app: c}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: "/x"}]}}]}]\n`,
  ),
  cnp(
    "p5",
    `  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]}]\n`,
  ),
  cnp(
    "p6",
    `  endpointSelector: {matchLabels: {app: c}}\n  egressDeny: [{toCIDR: [198.51.100.0/24]}]\n  egress: [{toEntities: [world]}]\n`,
  ),
  cnp(
    "p7",
    `  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{fromCIDR: [10.200.0.0/16, "2001:db8::/32"], toPorts: [{ports: [{port: "5000", endPort: 5010, protocol: UDP}, {port: "9000", protocol: SCTP}]}]}]\n`,
  ),
  // Audit mode: would-be drops are logged and let through (audit chains, auditDefault).
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p8, namespace: default, annotations: {policy.membrane.io/audit: "true"}}
spec:
  endpointSelector: {matchLabels: {app: b}}
  egressDeny: [{toEndpoints: [{matchLabels: {app: a}}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  egress: [{toEndpoints: [{matchLabels: {app: c}}]}]
`,
];

/** Remote prefixes (ipcache churn), overlapping the policies' CIDRs and each other. */
const REMOTE = [
  "10.200.1.0/24",
  "10.200.1.7/32",
  "192.0.2.64/26",
  "198.51.100.7/32",
  "172.16.0.0/12",
  "2001:db8:1::/48",
  "2001:db8:1::5/128",
] as const;
export const REMOTE_IDS = [30001, 30002, 30003] as const;
/** Addresses of other nodes' endpoints (exact ipcache entries, the hosts maps). */
const REMOTE_EPS = ["10.200.1.7", "10.9.0.1", "10.9.0.2", "2001:db8:1::5", "fd00:9::1"] as const;

export type Op =
  | { op: "ep"; slot: number; app: number }
  | { op: "delEp"; slot: number }
  | { op: "pol"; i: number }
  | { op: "delPol"; i: number }
  | { op: "remote"; i: number; id: number }
  | { op: "delRemote"; i: number }
  | { op: "remoteEp"; i: number; app: number }
  | { op: "delRemoteEp"; i: number }
  | { op: "proxy"; on: boolean };

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("ep" as const), slot: fc.nat(SLOTS - 1), app: fc.nat(2) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delEp" as const), slot: fc.nat(SLOTS - 1) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("pol" as const), i: fc.nat(POLICIES.length - 1) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("delPol" as const), i: fc.nat(POLICIES.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("remote" as const),
      i: fc.nat(REMOTE.length - 1),
      id: fc.nat(REMOTE_IDS.length - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("delRemote" as const), i: fc.nat(REMOTE.length - 1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("remoteEp" as const),
      i: fc.nat(REMOTE_EPS.length - 1),
      app: fc.nat(APPS.length - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("delRemoteEp" as const), i: fc.nat(REMOTE_EPS.length - 1) }),
  },
  // The node's proxy starts or stops: L7 segments become redirects or fail-closed drops.
  { weight: 1, arbitrary: fc.record({ op: fc.constant("proxy" as const), on: fc.boolean() }) },
);

/** The world the ops build: an engine, as the agent holds it, and the node's local endpoints. */
export class World {
  readonly engine: PolicyEngine;
  readonly local = new Map<number, LocalEndpoint>();
  private proxy = true;
  private readonly builder = new DesiredBuilder();

  constructor(dualStack: boolean) {
    this.engine = new PolicyEngine({ config: { dualStack } });
  }

  private readonly parsed = POLICIES.map((y, i) => parsePolicies(y, `p${i}.yaml`));

  step(o: Op): void {
    switch (o.op) {
      case "ep": {
        const name = `ep${o.slot}`;
        const ipv4 = `10.1.0.${10 + o.slot}`;
        const ipv6 = `fd00:1::${10 + o.slot}`;
        // A known slot is relabelled (same addresses), a free one is created.
        this.engine.upsertEndpoint({
          name,
          namespace: "default",
          labels: { app: APPS[o.app] as string },
          ips: [ipv4, ipv6],
        });
        this.local.set(o.slot, {
          namespace: "default",
          name,
          id: o.slot + 1,
          hostIfname: `pph${o.slot}`,
          ipv4,
          ...(o.slot % 2 === 0 ? { ipv6 } : {}),
        });
        return;
      }
      case "delEp":
        if (!this.local.delete(o.slot)) return;
        this.engine.deleteEndpoint("default", `ep${o.slot}`);
        return;
      case "pol":
        for (const p of this.parsed[o.i] ?? []) this.engine.upsertPolicy(p);
        return;
      case "delPol":
        for (const p of this.parsed[o.i] ?? []) this.engine.deletePolicy(p.ref);
        return;
      case "remote":
        this.engine.ipcache.setPrefix(prefix(REMOTE[o.i]), REMOTE_IDS[o.id] as number, "cidr");
        return;
      case "remoteEp":
        this.engine.upsertRemoteEndpoint({
          ip: REMOTE_EPS[o.i] as string,
          namespace: "default",
          labels: { app: APPS[o.app] as string },
        });
        return;
      case "delRemoteEp":
        this.engine.deleteRemoteEndpoint(REMOTE_EPS[o.i] as string);
        return;
      case "delRemote":
        this.engine.ipcache.deletePrefix(prefix(REMOTE[o.i]));
        return;
      case "proxy":
        this.proxy = o.on;
        return;
    }
  }

  state(): DatapathState {
    const eps = [...this.local.values()].sort((a, b) => a.id - b.id);
    return this.builder.build(
      this.engine,
      eps,
      this.proxy ? { proxy: PROXY, authAvailable: false } : { authAvailable: false },
    );
  }
}

function prefix(s: string | undefined): NonNullable<ReturnType<typeof parsePrefix>> {
  const p = s === undefined ? undefined : parsePrefix(s);
  if (!p) throw new Error(`bad test prefix ${String(s)}`);
  return p;
}
