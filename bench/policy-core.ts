/**
 * Benchmark of the policy core: full resolution of N endpoints x P policies,
 * and the incremental cost of one label change and one added policy.
 *
 *   node dist/bench/policy-core.js <endpoints> <policies>   -> one JSON line
 *
 * The world is shaped like a real cluster: namespaces of ~100 pods, ten apps
 * per namespace in two tiers; policies allow app-to-app inside a namespace,
 * some across namespaces, egress to a database port and to outside CIDRs, and
 * a few deny rules.
 */
import { Selector } from "../src/labels/selector.js";
import { parsePrefix } from "../src/labels/cidr.js";
import { PolicyEngine } from "../src/policy/engine.js";
import type { PolicyResource, Rule, RuleElement } from "../src/policy/types.js";
import { benchArgs } from "./cli.js";

const NS_KEY = "io.kubernetes.pod.namespace";

function nsReq(ns: string) {
  return { source: "k8s", key: NS_KEY, operator: "In" as const, values: [ns] };
}

export function makePolicy(i: number, namespaces: number, apps: number): PolicyResource {
  // Spread policies over (namespace, app) pairs as a real cluster would.
  const ns = `ns${i % namespaces}`;
  const subjectApp = Math.floor(i / namespaces);
  const ref = { kind: "CiliumNetworkPolicy" as const, name: `p${i}`, namespace: ns };
  const origin = (path: string, deny = false) => ({ policy: ref, path, deny });
  const app = (k: number) => Selector.fromLabelSelector({ matchLabels: { app: `app${k % apps}` } });
  const subject = app(subjectApp).and(nsReq(ns));
  const ingress: RuleElement[] = [
    {
      origin: origin("spec.ingress[0]"),
      peers: [{ kind: "endpoints", selector: app(subjectApp + 1).and(nsReq(ns)) }],
      requires: [],
      ports: [{ ports: [{ protocol: "TCP", port: 8080, endPort: 8080 }] }],
    },
    {
      origin: origin("spec.ingress[1]"),
      peers: [{ kind: "endpoints", selector: app(subjectApp + 2).and(nsReq(`ns${(i + 1) % namespaces}`)) }],
      requires: [],
      ports: [{ ports: [{ protocol: "TCP", port: 9000, endPort: 9100 }] }],
    },
  ];
  const cidr = parsePrefix(`10.${(i % 200) + 1}.0.0/16`)!;
  const egress: RuleElement[] = [
    {
      origin: origin("spec.egress[0]"),
      peers: [
        {
          kind: "endpoints",
          selector: Selector.fromLabelSelector({ matchLabels: { tier: "db" } }).and(nsReq(ns)),
        },
      ],
      requires: [],
      ports: [{ ports: [{ protocol: "TCP", port: 5432, endPort: 5432 }] }],
    },
    { origin: origin("spec.egress[1]"), peers: [{ kind: "cidr", prefix: cidr, except: [] }], requires: [] },
    { origin: origin("spec.egress[2]"), peers: [{ kind: "entity", entity: "kube-apiserver" }], requires: [] },
  ];
  const egressDeny: RuleElement[] =
    i % 10 === 0
      ? [
          {
            origin: origin("spec.egressDeny[0]", true),
            peers: [{ kind: "entity", entity: "world" }],
            requires: [],
            ports: [{ ports: [{ protocol: "TCP", port: 25, endPort: 25 }] }],
          },
        ]
      : [];
  const rule: Rule = {
    policy: ref,
    path: "spec",
    subject,
    selectsNodes: false,
    ingress,
    ingressDeny: [],
    egress,
    egressDeny,
    defaultDeny: { ingress: true, egress: true },
  };
  return { ref, rules: [rule], audit: false };
}

function endpointSpec(i: number, namespaces: number, apps: number) {
  const ns = `ns${i % namespaces}`;
  const a = Math.floor(i / namespaces) % apps;
  return {
    name: `pod${i}`,
    namespace: ns,
    labels: { app: `app${a}`, tier: i % 7 === 0 ? "db" : "web" },
    ips: [`172.${16 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`],
  };
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

export function run(endpoints: number, policies: number) {
  const namespaces = Math.max(1, Math.round(endpoints / 100));
  const apps = 10;
  let peakRss = process.memoryUsage().rss;
  const sample = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const rssBefore = process.memoryUsage().rss;

  const t0 = process.hrtime.bigint();
  const engine = new PolicyEngine();
  for (let i = 0; i < endpoints; i++) engine.upsertEndpoint(endpointSpec(i, namespaces, apps));
  for (let i = 0; i < policies; i++) engine.upsertPolicy(makePolicy(i, namespaces, apps));
  engine.regenerate();
  const resolveMs = ms(t0);
  let entries = 0;
  let segments = 0;
  const t1 = process.hrtime.bigint();
  for (const ep of engine.listEndpoints()) {
    const p = engine.endpointPolicy(ep.spec.namespace, ep.spec.name);
    entries += p.ingress.mapState.size + p.egress.mapState.size;
    segments += p.ingress.mapState.flatten().length + p.egress.mapState.flatten().length;
  }
  const flattenMs = ms(t1);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);

  // Incremental: one endpoint's label change (re-identification), then one added policy.
  const labelChange: number[] = [];
  for (let k = 0; k < 20; k++) {
    const spec = endpointSpec(k * 37, namespaces, apps);
    const t = process.hrtime.bigint();
    engine.upsertEndpoint({ ...spec, labels: { ...spec.labels, app: `app${(k + 3) % apps}` } });
    engine.regenerate();
    labelChange.push(ms(t));
  }
  const addPolicy: number[] = [];
  for (let k = 0; k < 20; k++) {
    const t = process.hrtime.bigint();
    engine.upsertPolicy(makePolicy(policies + k, namespaces, apps));
    engine.regenerate();
    addPolicy.push(ms(t));
  }
  clearInterval(sample);
  return {
    bench: "policy-core",
    endpoints,
    policies,
    identities: [...engine.identities()].length,
    mapStateEntries: entries,
    kernelSegments: segments,
    fullResolveMs: Math.round(resolveMs),
    flattenMs: Math.round(flattenMs),
    peakRssMiB: Math.round(peakRss / 2 ** 20),
    rssGrowthMiB: Math.round((peakRss - rssBefore) / 2 ** 20),
    labelChangeMs: {
      p50: +percentile(labelChange, 50).toFixed(2),
      p99: +percentile(labelChange, 99).toFixed(2),
    },
    addPolicyMs: { p50: +percentile(addPolicy, 50).toFixed(2), p99: +percentile(addPolicy, 99).toFixed(2) },
  };
}

if (process.argv[1]?.endsWith("policy-core.js")) {
  const { args } = benchArgs({
    script: "policy-core",
    runner: "policy-core",
    measures: "The policy core: full resolution of a cluster-shaped world of N endpoints x P policies, then the incremental cost of one label change and one added policy (p50/p99), with peak RSS. One JSON line. npm run bench runs 1,000-10,000 x 100-1,000, each size in its own process.", // prettier-ignore
    root: false,
    args: {
      usage: "<endpoints> <policies>",
      help: "the world's size",
      min: 2,
      max: 2,
      check: (a) => (a.every((x) => /^\d+$/.test(x) && Number(x) > 0) ? undefined : `${a.join(" ")}: give two positive whole numbers`), // prettier-ignore
    },
    flags: {},
  });
  console.log(JSON.stringify(run(Number(args[0]), Number(args[1]))));
}
