/**
 * healthCheckNodePort and an IPv6 LoadBalancer address through the agent (root: netns,
 * nftables, real packets): an outside load balancer's health probe (HTTP from a namespace wired
 * to the node like an uplink) gets kube-proxy's answer, 200 while the node has a local ready
 * backend and 503 once it has none; the port closes with the Service; a dual-stack LoadBalancer
 * gets an address from each --lb-pool and its IPv6 one carries connections to the pod.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { ServiceView } from "../../src/lb/types.js";
import { AgentLab, OUTSIDE6, rootSkipReason, T } from "../agent/e2e/harness.js";

const skip = rootSkipReason();

const WEB = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

/** What an HTTP GET from `netns` got: status, content type and body, or the error code. */
interface Got {
  readonly status?: number;
  readonly type?: string;
  readonly nosniff?: string;
  readonly body?: string;
  readonly error?: string;
}

const GET = `const u = process.argv[1];
require("http").get(u, { timeout: 2000 }, (r) => {
  let b = "";
  r.on("data", (d) => (b += d));
  r.on("end", () => console.log(JSON.stringify({ status: r.statusCode, type: r.headers["content-type"], nosniff: r.headers["x-content-type-options"], body: b })));
}).on("timeout", function () { this.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })); })
  .on("error", (e) => console.log(JSON.stringify({ error: e.code || e.message })));`;

describe(
  "healthCheckNodePort and an IPv6 LoadBalancer address (root: netns, real packets)",
  { skip: skip ?? false },
  () => {
    let lab: AgentLab;
    let out: string;
    const get = async (url: string): Promise<Got> =>
      JSON.parse(await lab.sh(out, [process.execPath, "-e", GET, url])) as Got;
    const view = (): ServiceView | undefined => lab.agent.lb.list().find((v) => v.name === "web");

    before(async () => {
      lab = await AgentLab.start("m4dhc", {
        podCidr6: "fd00:210::/64",
        lb: {
          serviceCidr: "10.96.0.0/16",
          serviceCidrSecondary: "fd00:96::/112",
          loadBalancerPool: "198.18.0.0/24",
          loadBalancerPoolSecondary: "2001:db8:5::/112",
          nodePortRange: [30000, 32767],
        },
      });
      await lab.endpoint("web1", { app: "web" }, { tcp: [8080] });
      await lab.endpoint("client", { app: "client" });
      out = await lab.outsideNamespace([]);
    });
    after(async () => {
      await lab?.destroy();
    });

    test("the node with a local ready backend answers 200 with kube-proxy's JSON; without one, 503", async () => {
      await lab.agent.lb.apply(WEB, "web.yaml");
      const v = view();
      const port = v?.healthCheckNodePort;
      assert.ok(port !== undefined && port >= 30000 && port <= 32767, JSON.stringify(v));
      assert.equal(v?.localEndpoints, 1);
      const ok = await get(`http://192.0.2.1:${port}/`);
      assert.equal(ok.status, 200, JSON.stringify(ok));
      assert.equal(ok.type, "application/json");
      assert.equal(ok.nosniff, "nosniff");
      assert.deepEqual(JSON.parse(ok.body ?? ""), {
        service: { namespace: "default", name: "web" },
        localEndpoints: 1,
        serviceProxyHealthy: true,
      });
      // The pod leaves the service (relabelled): this node has no local backend any more.
      await lab.agent.labelEndpoint("default", "web1", { app: "gone" }, true);
      assert.equal(view()?.localEndpoints, 0);
      const gone = await get(`http://192.0.2.1:${port}/`);
      assert.equal(gone.status, 503, JSON.stringify(gone));
      assert.equal((JSON.parse(gone.body ?? "") as { localEndpoints: number }).localEndpoints, 0);
      await lab.agent.labelEndpoint("default", "web1", { app: "web" }, true);
      assert.equal((await get(`http://192.0.2.1:${port}/healthz`)).status, 200, "any path, as kube-proxy");
      // Both families on the one port: an IPv6 probe (here from the node itself) gets the same answer.
      const six = JSON.parse(
        await lab.sh(lab.node, [process.execPath, "-e", GET, `http://[::1]:${port}/`]),
      ) as Got;
      assert.equal(six.status, 200, JSON.stringify(six));
      // Least privilege: the process listening on the port (it parses outside bytes) is nobody.
      const ss = await lab.sh(lab.node, ["ss", "-Hltnp", `sport = :${port}`]);
      const pid = /pid=(\d+)/.exec(ss)?.[1];
      assert.ok(pid !== undefined, ss);
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      assert.match(status, /^CapEff:\s+0+$/m);
    });

    test("a dual-stack LoadBalancer gets one address of each pool; its IPv6 address reaches the pod from a pod and from outside the node", async () => {
      // prettier-ignore
      const v = view();
      const [four, six] = (v?.externalIP ?? "").split(",");
      assert.match(four ?? "", /^198\.18\.0\./, JSON.stringify(v));
      assert.match(six ?? "", /^2001:db8:5::/, JSON.stringify(v));
      const before1 = await lab.ep("web1").probe.count("tcp", 8080);
      for (let i = 0; i < 3; i++)
        assert.equal(await lab.ep("client").probe.tcp(six ?? "", 80, T), "ok", "IPv6");
      assert.equal(await lab.ep("client").probe.tcp(four ?? "", 80, T), "ok", "IPv4");
      assert.equal((await lab.ep("web1").probe.count("tcp", 8080)) - before1, 4);
      // From outside the node (the uplink namespace, over IPv6): to the pod, the client's address kept
      // (externalTrafficPolicy: Local), the answer back through the node.
      const outside = lab.probeIn(out);
      const before2 = await lab.ep("web1").probe.count("tcp", 8080);
      for (let i = 0; i < 3; i++)
        assert.equal(await outside.tcp(six ?? "", 80, T), "ok", "IPv6 from outside");
      assert.equal(await outside.tcp(four ?? "", 80, T), "ok", "IPv4 from outside");
      assert.equal((await lab.ep("web1").probe.count("tcp", 8080)) - before2, 4);
      assert.equal(await outside.open("six", six ?? "", 80, T), "ok", "a connection held open from outside");
      const peers = await lab.sh(lab.ep("web1").view.netns, ["ss", "-Htn", "state", "established", "sport", "=", ":8080"]); // prettier-ignore
      assert.match(peers, new RegExp(`\\[${OUTSIDE6.outside}\\]:\\d+`), `the pod saw the outside client's IPv6 address: ${peers}`); // prettier-ignore
    });

    test("the health check port closes with the Service", async () => {
      const port = view()?.healthCheckNodePort;
      await lab.agent.lb.delete(WEB, "web.yaml");
      assert.equal(view(), undefined);
      assert.equal((await get(`http://192.0.2.1:${port ?? 0}/`)).error, "ECONNREFUSED");
    });
  },
);
