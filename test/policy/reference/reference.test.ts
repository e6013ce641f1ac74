import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { referenceDecide, type RefQuery, type RefSide, type RefWorld } from "./reference.js";
import { firstDisagreement } from "./compare.js";
import { worldArb } from "./gen.js";
import { DEFAULT_ENGINE_CONFIG, type EngineConfig } from "../../../src/policy/query.js";
import type { PeerSelector, PolicyResource, PortRule, Rule, RuleElement } from "../../../src/policy/types.js";
import { LabelSet } from "../../../src/labels/label.js";
import { Selector } from "../../../src/labels/selector.js";
import { parsePrefix, type Prefix } from "../../../src/labels/cidr.js";
import { workloadLabels } from "../../../src/labels/k8s.js";

// ---- a small hand-made world ----------------------------------------------------

const ref = { kind: "CiliumNetworkPolicy" as const, name: "p", namespace: "prod" };
const pfx = (s: string): Prefix => parsePrefix(s) as Prefix;
const sel = (m: Record<string, string>): Selector => Selector.fromLabelSelector({ matchLabels: m });
const pod = (name: string, app: string): RefSide & { ns: string } => ({
  ns: "prod",
  identity: 300 + name.length,
  labels: workloadLabels({ namespace: "prod", labels: { app } }),
  endpoint: name,
});
const WEB = pod("web", "web");
const DB = pod("db1", "db");
const HOST: RefSide = { identity: 1, labels: LabelSet.parse(["reserved:host"]) };
const REMOTE: RefSide = { identity: 6, labels: LabelSet.parse(["reserved:remote-node"]) };
const CIDR_1: RefSide = {
  identity: 1 << 24,
  labels: LabelSet.parse(["reserved:world", "cidr:10.1.2.0/24"]),
  prefix: pfx("10.1.2.0/24"),
};
const WORLD: RefSide = { identity: 2, labels: LabelSet.parse(["reserved:world"]) };

const world = (config: Partial<EngineConfig> = {}): RefWorld => ({
  config: { ...DEFAULT_ENGINE_CONFIG, ...config },
  endpoints: [WEB, DB].map((s) => ({
    name: s.endpoint as string,
    namespace: s.ns,
    labels: s.labels,
    identity: s.identity,
    ips: [],
  })),
  outsideIdentity: () => ({ id: 2, labels: WORLD.labels }),
});

const tcp = (port: number): PortRule => ({ ports: [{ protocol: "TCP", port, endPort: port }] });
const el = (peers: PeerSelector[], extra: Partial<RuleElement> = {}, deny = false): RuleElement => ({
  origin: { policy: ref, path: "spec", deny },
  peers,
  requires: [],
  ...extra,
});
const rule = (r: Partial<Rule> & { subject: Selector }): PolicyResource => {
  const full: Rule = {
    policy: ref,
    path: "spec",
    selectsNodes: false,
    ingress: [],
    ingressDeny: [],
    egress: [],
    egressDeny: [],
    ...r,
    defaultDeny: r.defaultDeny ?? {
      ingress: (r.ingress?.length ?? 0) + (r.ingressDeny?.length ?? 0) > 0,
      egress: (r.egress?.length ?? 0) + (r.egressDeny?.length ?? 0) > 0,
    },
  };
  return { ref, rules: [full], audit: false };
};
const ep = (m: Record<string, string>): PeerSelector => ({ kind: "endpoints", selector: sel(m) });
const q = (src: RefSide, dst: RefSide, proto: RefQuery["proto"], port: number): RefQuery => ({
  src,
  dst,
  proto,
  port,
});

describe("referenceDecide", () => {
  const toDb = (...e: RuleElement[]): PolicyResource => rule({ subject: sel({ app: "db" }), ingress: e });
  const denyToDb = (...e: RuleElement[]): PolicyResource =>
    rule({ subject: sel({ app: "db" }), ingressDeny: e });
  const cases: {
    name: string;
    config?: Partial<EngineConfig>;
    policies: PolicyResource[];
    query: RefQuery;
    want: "allow" | "policy-denied" | "default-deny";
  }[] = [
    {
      name: "no policy allows everything in default mode",
      policies: [],
      query: q(WEB, DB, 6, 5432),
      want: "allow",
    },
    {
      name: "mode always enforces endpoints no rule selects",
      config: { policyEnforcementMode: "always" },
      policies: [],
      query: q(WEB, DB, 6, 5432),
      want: "default-deny",
    },
    {
      name: "an ingress rule puts its subject in default deny",
      policies: [toDb(el([ep({ app: "other" })]))],
      query: q(WEB, DB, 6, 5432),
      want: "default-deny",
    },
    {
      name: "an L3 allow from matching endpoints allows any port and ICMP",
      policies: [toDb(el([ep({ app: "web" })]))],
      query: q(WEB, DB, 1, 8),
      want: "allow",
    },
    {
      name: "a port-restricted allow does not allow ICMP",
      policies: [toDb(el([ep({ app: "web" })], { ports: [tcp(0)] }))],
      query: q(WEB, DB, 1, 8),
      want: "default-deny",
    },
    {
      name: "L4 deny beats L3 allow",
      policies: [
        toDb(el([ep({ app: "web" })])),
        denyToDb(el([ep({ app: "web" })], { ports: [tcp(5432)] }, true)),
      ],
      query: q(WEB, DB, 6, 5432),
      want: "policy-denied",
    },
    {
      name: "a deny applies even when it does not enable default deny",
      policies: [
        rule({
          subject: sel({ app: "db" }),
          ingressDeny: [el([ep({ app: "web" })], {}, true)],
          defaultDeny: { ingress: false, egress: false },
        }),
      ],
      query: q(WEB, DB, 17, 53),
      want: "policy-denied",
    },
    {
      name: "ingress from the host is allowed with allowLocalhost always",
      policies: [toDb(el([ep({ app: "web" })]))],
      query: q(HOST, DB, 6, 22),
      want: "allow",
    },
    {
      name: "a deny of the host entity beats allowLocalhost",
      policies: [
        toDb(el([ep({ app: "web" })])),
        denyToDb(el([{ kind: "entity", entity: "host" }], {}, true)),
      ],
      query: q(HOST, DB, 6, 22),
      want: "policy-denied",
    },
    {
      name: "allowLocalhost policy subjects the host to policy",
      config: { allowLocalhost: "policy" },
      policies: [toDb(el([ep({ app: "web" })]))],
      query: q(HOST, DB, 6, 22),
      want: "default-deny",
    },
    {
      name: "a CIDR except is not a deny: another allow still covers it",
      policies: [
        toDb(
          el([{ kind: "cidr", prefix: pfx("10.0.0.0/8"), except: [pfx("10.1.2.0/24")] }]),
          el([{ kind: "entity", entity: "world" }]),
        ),
      ],
      query: q(CIDR_1, DB, 6, 80),
      want: "allow",
    },
    {
      name: "a CIDR except removes its range from that element",
      policies: [toDb(el([{ kind: "cidr", prefix: pfx("10.0.0.0/8"), except: [pfx("10.1.2.0/24")] }]))],
      query: q(CIDR_1, DB, 6, 80),
      want: "default-deny",
    },
    {
      name: "a CIDR peer never selects a remote node",
      policies: [toDb(el([{ kind: "cidr", prefix: pfx("0.0.0.0/0"), except: [] }]))],
      query: q(REMOTE, DB, 6, 80),
      want: "default-deny",
    },
    {
      name: "0.0.0.0/0 selects the world identity",
      policies: [toDb(el([{ kind: "cidr", prefix: pfx("0.0.0.0/0"), except: [] }]))],
      query: q(WORLD, DB, 6, 80),
      want: "allow",
    },
    {
      name: "the cluster entity selects local pods by their cluster label",
      policies: [toDb(el([{ kind: "entity", entity: "cluster" }]))],
      query: q(WEB, DB, 6, 80),
      want: "allow",
    },
    {
      name: "the cluster entity does not select pods of another cluster name",
      config: { cluster: "other" },
      policies: [toDb(el([{ kind: "entity", entity: "cluster" }]))],
      query: q(WEB, DB, 6, 80),
      want: "default-deny",
    },
    {
      name: "an element with no peers selects nothing",
      policies: [toDb(el([], { ports: [tcp(80)] }))],
      query: q(WEB, DB, 6, 80),
      want: "default-deny",
    },
    {
      name: "ANY covers SCTP",
      policies: [
        toDb(el([ep({ app: "web" })], { ports: [{ ports: [{ protocol: "ANY", port: 80, endPort: 80 }] }] })),
      ],
      query: q(WEB, DB, 132, 80),
      want: "allow",
    },
    {
      name: "a port range is inclusive at its end",
      policies: [
        toDb(el([ep({ app: "web" })], { ports: [{ ports: [{ protocol: "UDP", port: 80, endPort: 90 }] }] })),
      ],
      query: q(WEB, DB, 17, 90),
      want: "allow",
    },
    {
      name: "a port range stops after its end",
      policies: [
        toDb(el([ep({ app: "web" })], { ports: [{ ports: [{ protocol: "UDP", port: 80, endPort: 90 }] }] })),
      ],
      query: q(WEB, DB, 17, 91),
      want: "default-deny",
    },
    {
      name: "an ICMPv6 field does not match ICMPv4 of the same type",
      policies: [toDb(el([ep({ app: "web" })], { icmps: [{ family: "IPv6", type: 128 }] }))],
      query: q(WEB, DB, 1, 128),
      want: "default-deny",
    },
    {
      name: "an ICMPv6 field matches ICMPv6 of its type",
      policies: [toDb(el([ep({ app: "web" })], { icmps: [{ family: "IPv6", type: 128 }] }))],
      query: q(WEB, DB, 58, 128),
      want: "allow",
    },
    {
      name: "mode never ignores denies",
      config: { policyEnforcementMode: "never" },
      policies: [denyToDb(el([{ kind: "all" }], {}, true))],
      query: q(WEB, DB, 6, 80),
      want: "allow",
    },
    {
      name: "the source's egress must allow too",
      policies: [
        toDb(el([ep({ app: "web" })])),
        rule({ subject: sel({ app: "web" }), egress: [el([ep({ app: "x" })])] }),
      ],
      query: q(WEB, DB, 6, 80),
      want: "default-deny",
    },
    {
      name: "a nodeSelector rule never selects endpoints",
      policies: [rule({ subject: Selector.ALL, selectsNodes: true, ingress: [el([ep({ app: "x" })])] })],
      query: q(WEB, DB, 6, 80),
      want: "allow",
    },
    {
      name: "a nodeSelector rule makes the host enforce its ingress",
      policies: [rule({ subject: Selector.ALL, selectsNodes: true, ingress: [el([ep({ app: "x" })])] })],
      query: q(WEB, HOST, 6, 80),
      want: "default-deny",
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const d = referenceDecide(world(c.config), c.policies, c.query);
      assert.equal(d.verdict === "allow" ? "allow" : d.reason, c.want);
    });
  }
});

// ---- the comparison has teeth ------------------------------------------------------

const mapElements = (ps: PolicyResource[], f: (e: RuleElement) => RuleElement): PolicyResource[] =>
  ps.map((p) => ({
    ...p,
    rules: p.rules.map((r) => ({
      ...r,
      ingress: r.ingress.map(f),
      egress: r.egress.map(f),
      ingressDeny: r.ingressDeny.map(f),
      egressDeny: r.egressDeny.map(f),
    })),
  }));

describe("engine versus reference notices a wrong spec", () => {
  const mutations: { name: string; mutate: (p: PolicyResource[]) => PolicyResource[] }[] = [
    {
      name: "a reference that ignores deny elements disagrees with the engine",
      mutate: (ps) =>
        ps.map((p) => ({ ...p, rules: p.rules.map((r) => ({ ...r, ingressDeny: [], egressDeny: [] })) })),
    },
    {
      name: "a reference that ignores CIDR excepts disagrees with the engine",
      mutate: (ps) =>
        mapElements(ps, (e) => ({
          ...e,
          peers: e.peers.map((x) => (x.kind === "cidr" ? { ...x, except: [] } : x)),
        })),
    },
    {
      name: "a reference that reads a port range as its first port disagrees with the engine",
      mutate: (ps) =>
        mapElements(ps, (e) =>
          e.ports
            ? {
                ...e,
                ports: e.ports.map((pr) => ({
                  ...pr,
                  ports: pr.ports.map((x) => ({ ...x, endPort: x.port })),
                })),
              }
            : e,
        ),
    },
    {
      name: "a reference that swaps ICMP families disagrees with the engine",
      mutate: (ps) =>
        mapElements(ps, (e) =>
          e.icmps
            ? {
                ...e,
                icmps: e.icmps.map((f) => ({
                  ...f,
                  family: f.family === "IPv4" ? ("IPv6" as const) : ("IPv4" as const),
                })),
              }
            : e,
        ),
    },
    {
      name: "a reference that ignores enableDefaultDeny disagrees with the engine",
      mutate: (ps) =>
        ps.map((p) => ({
          ...p,
          rules: p.rules.map((r) => ({
            ...r,
            defaultDeny: {
              ingress: r.ingress.length + r.ingressDeny.length > 0,
              egress: r.egress.length + r.egressDeny.length > 0,
            },
          })),
        })),
    },
  ];
  for (const m of mutations) {
    test(m.name, () => {
      const out = fc.check(
        fc.property(worldArb, (w) => firstDisagreement(w, m.mutate) === undefined),
        { seed: 42, numRuns: 300, endOnFailure: true },
      );
      assert.equal(out.failed, true, "300 random worlds never told the mutated reference from the engine");
    });
  }
});
