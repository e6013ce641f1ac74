// LoadBalancer addresses in cluster mode under least privilege, with real packets (root, etcd): two
// real `membrane agent` processes (src/lab/cluster.ts) on an etcd with authentication on and the
// roles of the real etcdSetup, each agent with its own node's credentials. n1's Gateway gets an
// address of the pool under n1's own key and answers HTTP on it; the admin applies a LoadBalancer
// Service and its EndpointSlice (`membrane apply --cluster-store` as membrane-admin, a real
// process) whose backend is a pod on n2; a client outside the cluster sends TCP to the allocated
// address through n1 and gets the backend's answer. The same apply with a node's credentials is
// refused and changes nothing.
import assert from "node:assert/strict";
import { execFile, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { MEMBRANE_BIN, startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { createEndpoint } from "../../src/lab/cluster-api.js";
import type { ServiceView } from "../../src/lb/types.js";
import { rootSkipReason } from "../datapath/harness.js";
import { CLASS, gatewayYaml } from "../gateway/fixtures.js";
import { httpGet, killGroup, startEcho, type Answer } from "../gateway/netns-lab.js";
import { until } from "../support/until.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const run = promisify(execFile);
const POOL = "198.18.20.0/29"; // .2 to .6
const OUTSIDE = "172.31.0.200"; // a client on the underlay, outside the cluster

const service = (backend: string): string => `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["${backend}"]}]
`;

const GATEWAY = `${CLASS}${gatewayYaml("gw", ["{name: http, port: 80, protocol: HTTP}"], { namespace: "default" })}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`;

/** Polls `f` until it gives a value (a safety net of `ms`, not a measurement); `detail` says what was seen last. */
async function valueOf<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  detail: () => Promise<string> | string,
  ms = 60_000,
): Promise<T> {
  // prettier-ignore
  let v: T | undefined;
  let seen = "";
  // An error counts as "not yet" (an agent busy applying a change may drop a request); the last one is said.
  const poll = async (): Promise<boolean> => {
    try {
      if ((v = await f()) !== undefined) return true;
      seen = await detail();
    } catch (e) {
      seen = String(e);
    }
    return false;
  };
  await until(what, poll, { ms, detail: () => seen });
  return v as T;
}

interface GatewayView {
  readonly resources: { name: string; status?: unknown }[];
}

/** The Gateway's addresses and Programmed condition as n1 reports them. */
async function gatewayStatus(n: LabNode): Promise<{ addresses: string[]; programmed: string }> {
  const v = (await n.client.request("GET", "/v1/gateway?kinds=Gateway")) as GatewayView;
  const st = v.resources.find((r) => r.name === "gw")?.status as
    | { addresses?: { value: string }[]; conditions?: { type: string; status: string; reason: string }[] }
    | undefined;
  const p = st?.conditions?.find((c) => c.type === "Programmed");
  return { addresses: (st?.addresses ?? []).map((a) => a.value), programmed: `${p?.status}/${p?.reason}` };
}

test(
  "etcd auth on (root: two agent processes, real packets): a Gateway's pool address answers HTTP; the admin's LoadBalancer Service answers from its backend on n2 through n1",
  { skip },
  async () => {
    const prefix = "a19" + randomBytes(2).toString("hex");
    let lab: LabCluster | undefined;
    let echo: ChildProcess | undefined;
    try {
      lab = await startLabCluster({
        prefix,
        nodes: 2,
        leaseTtl: 5,
        etcdAuth: true,
        agentArgs: ["--service-cidr", "10.97.0.0/16", "--lb-pool", POOL, "--gateway"],
      });
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      const auth = lab.auth;
      assert.ok(auth, "the lab's etcd runs with authentication");
      const web = await createEndpoint(n2, "web", { app: "web" });
      echo = await startEcho(web.netns, "web-on-n2");
      // The outside client: an address on the underlay's bridge, the pool routed through n1.
      const outside = `${prefix}-ul`;
      await run("ip", ["-n", outside, "addr", "add", `${OUTSIDE}/24`, "dev", "br0"]);
      await run("ip", ["-n", outside, "route", "add", POOL, "via", n1.ip]);

      // n1's Gateway, applied through n1 (a node's own resource): an address of the pool, held
      // under n1's own key (its role may write nothing else of lb/).
      await n1.client.request("POST", "/v1/gateway", { text: GATEWAY, file: "gw.yaml" });
      const gw = await valueOf("n1's Gateway gets an address of the pool", async () => {
        const s = await gatewayStatus(n1);
        return s.programmed === "True/Programmed" && s.addresses.length === 1 ? s : undefined;
      }, async () => JSON.stringify(await gatewayStatus(n1))); // prettier-ignore
      const gwAddress = gw.addresses[0] ?? "";
      assert.match(gwAddress, /^198\.18\.20\.[2-6]$/);

      // The Service and its slice as a node: refused by etcd, nothing written.
      const dir = lab.dir;
      writeFileSync(join(dir, "web.yaml"), service(web.ipv4));
      const apply = (c: { username: string; passwordFile: string }): ReturnType<typeof spawnSync> =>
        spawnSync(process.execPath, [MEMBRANE_BIN, "apply", "-f", join(dir, "web.yaml"), "--cluster-store", lab?.clusterStore ?? "", "--etcd-username", c.username, "--etcd-password-file", c.passwordFile], { encoding: "utf8", timeout: 60_000 }); // prettier-ignore
      const denied = apply(auth.node("n1"));
      assert.notEqual(denied.status, 0, "a node may not write Services");
      assert.match(String(denied.stderr), /permission denied/);
      // As the admin: allocated from the ranges the agents publish, the Gateway's address skipped.
      const ok = apply(auth.admin);
      assert.equal(ok.status, 0, String(ok.stderr));
      assert.match(String(ok.stdout), /service\/default\/web\s+created/);
      const views = async (n: LabNode): Promise<ServiceView[]> =>
        (await n.client.request("GET", "/v1/lb/services")) as ServiceView[];
      const lb = await valueOf("n1 balances the admin's Service to the pod on n2", async () => {
        const v = (await views(n1)).find((s) => s.name === "web");
        return v?.backends.some((b) => b.address === `${web.ipv4}:8080`) ? v.externalIP : undefined;
      }, async () => JSON.stringify(await views(n1))); // prettier-ignore
      assert.match(lb, /^198\.18\.20\.[2-6]$/, "a LoadBalancer address of the pool");
      assert.notEqual(lb, gwAddress, "not the Gateway's");

      /** The first 200 an outside client gets from `url` (polled: the nodes apply what they read meanwhile). */
      const ok200 = (what: string, url: string): Promise<Answer> => {
        let last: Answer | undefined;
        return valueOf(what, () => {
          last = httpGet(outside, url)[0];
          return last?.status === 200 ? last : undefined;
        }, () => JSON.stringify(last)); // prettier-ignore
      };
      // Real TCP from outside the cluster to the LoadBalancer address, through n1, to the pod on n2.
      const viaLb = await ok200("the LoadBalancer address answers from the backend", `http://${lb}/via-lb`);
      assert.equal(viaLb.headers?.["x-backend"], "web-on-n2");
      // The backend saw n1's address: masqueraded, so that the reply came back through n1's DNAT.
      assert.equal((JSON.parse(viaLb.body ?? "{}") as { peer?: string }).peer, n1.ip);
      // The Gateway's address answers HTTP: the route to the same Service (once n1's gateway has its
      // backends), the backend on n2.
      const viaGw = await ok200("the Gateway's address answers from the backend", `http://${gwAddress}/via-gateway`); // prettier-ignore
      assert.equal(viaGw.headers?.["x-backend"], "web-on-n2");
      assert.equal((JSON.parse(viaGw.body ?? "{}") as { url?: string }).url, "/via-gateway");
    } catch (e) {
      // The agents' own words with the failure (the lab's directory goes with stop()).
      for (const n of lab?.nodes ?? []) console.error(`--- ${n.name}'s agent:\n${n.logs().split("\n").slice(-30).join("\n")}`); // prettier-ignore
      throw e;
    } finally {
      if (echo) killGroup(echo);
      await lab?.stop();
    }
  },
);
