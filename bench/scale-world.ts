/**
 * The world of the scale benchmark (scale.ts): local endpoint labels, the
 * remote endpoints of the rest of the cluster, the policies, and the
 * endpoint records seeded straight into a store.
 *
 *   50,000 remote addresses (10.128.0.0/16) over 10,000 label sets -> 10,000 identities
 *   local endpoints: app0..app9 x tier db|web
 *   policies: db <- {grp: g1} + app1 on 5432|5433 (the two variants alternate),
 *             web <- {grp: g3} :80, web -> {grp: g2} :443 and tier db :5432,
 *             bench-server <- bench-client on the traffic ports
 *   -> MapStates of about 10-30 entries per endpoint.
 */
import { Ipam } from "../src/agent/ipam.js";
import { KEYS, type EndpointRecordV1 } from "../src/agent/records.js";
import type { RemoteEndpointSpec } from "../src/policy/query.js";
import type { Store } from "../src/store/store.js";
import { IPERF_PORT, RR_PORT } from "./traffic.js";

export const REMOTES = 50_000;
export const LABEL_SETS = 10_000;
/** Remote endpoints per bulk request (the API's limit per request). */
export const BULK = 10_000;

/** Labels of remote label set `j`: 10 sets share each `grp`, so a group selects 10 identities. */
export const remoteLabels = (j: number): Record<string, string> => ({ app: `svc${j}`, grp: `g${j % 1000}` });

export function remoteEndpoint(i: number): RemoteEndpointSpec {
  return {
    ip: `10.${128 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    namespace: "default",
    labels: remoteLabels(i % LABEL_SETS),
  };
}

export const localLabels = (i: number): Record<string, string> => ({
  app: `app${i % 10}`,
  tier: i % 5 === 0 ? "db" : "web",
});

/** The policy file; `variant` 0 or 1 moves the db port, so that each apply changes the kernel. */
export function policies(variant: number): string {
  const db = variant % 2 === 0 ? 5432 : 5433;
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench-db, namespace: default}
spec:
  endpointSelector: {matchLabels: {tier: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {grp: g1}}, {matchLabels: {app: app1}}]
    toPorts: [{ports: [{port: "${db}", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench-web, namespace: default}
spec:
  endpointSelector: {matchLabels: {tier: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {grp: g3}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {grp: g2}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {tier: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench-traffic, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: bench-server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: bench-client}}]
    toPorts: [{ports: [{port: "${IPERF_PORT}", protocol: TCP}, {port: "${RR_PORT}", protocol: TCP}]}]
`;
}

/**
 * Endpoint records for `default/ep<from>..ep<n-1>` written straight into the
 * store with addresses from IPAM (no namespaces: the agent creates them when
 * it starts, as after a reboot).
 */
export async function seedEndpoints(
  store: Store,
  p: {
    from?: number;
    n: number;
    podCidr4: string;
    netnsPrefix: string;
    labels?: (i: number) => Record<string, string>;
  },
): Promise<void> {
  const ipam = new Ipam({ store, ipv4: p.podCidr4 });
  for (let i = p.from ?? 0; i < p.n; i++) {
    const key = `default/ep${i}`;
    const addr = await ipam.allocate(key);
    const id = i + 1;
    const rec: EndpointRecordV1 = {
      v: 1,
      name: `ep${i}`,
      namespace: "default",
      labels: (p.labels ?? localLabels)(i),
      id,
      netns: `${p.netnsPrefix}ep${id}`,
      hostIfname: `mbr${id}`,
      ipv4: addr.ipv4,
    };
    await store.put(KEYS.endpoints + key, JSON.stringify(rec));
  }
}
