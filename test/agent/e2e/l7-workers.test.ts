/**
 * One L7 proxy worker per core behind the same redirect (needs root): two
 * worker processes on ports 15001/15002 (DNS 15053/15054), real packets.
 *
 *   tiefighter --TCP :80--> kernel DNAT numgen inc mod 2 --> worker 0 (:15001) | worker 1 (:15002) --> deathstar
 *
 * L7 policy holds with several workers; new connections are spread over
 * them; a killed worker leaves the redirect (fail closed: its share is never
 * forwarded unproxied) and comes back once restarted with the policy.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason } from "./harness.js";
import { until } from "../../support/until.js";

const skip = rootSkipReason();

const STARWARS_L7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1, namespace: default}
spec:
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - method: POST
          path: /v1/request-landing
`;

describe("agent e2e: L7 proxy workers, one per core (root)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  const ds = (): string => lab.ep("deathstar").ip;
  const get = (method: string, path: string): Promise<string> =>
    lab.ep("tiefighter").probe.http(ds(), 80, { method, path }, 1500);
  /** The TCP rule of the node's redirect (nat_c). */
  const tcpRedirect = async (): Promise<string> => {
    const text = await lab.sh(lab.node, ["nft", "list", "chain", "inet", `m${lab.prefix}`, "nat_c"]);
    return text.split("\n").find((l) => l.includes("meta l4proto tcp dnat ip to")) ?? "";
  };
  /**
   * Connections the proxy workers served, by their listening port: the node's conntrack entries of
   * connections to deathstar's :80 whose reply comes from a worker's port (the DNAT). An entry outlives
   * its sockets (TIME_WAIT, 120 s) whichever side closed first; counting TIME-WAIT sockets did not
   * (CI: when the client closed first, the proxy's side left no TIME-WAIT socket).
   */
  const servedByPort = async (): Promise<{ n: Map<number, number>; text: string }> => {
    const text = await lab.sh(lab.node, ["cat", "/proc/net/nf_conntrack"]);
    const n = new Map<number, number>();
    const dnat = new RegExp(
      `dst=${ds().replaceAll(".", "\\.")} sport=\\d+ dport=80 .*src=\\S+ dst=\\S+ sport=(1500[12]) `,
    );
    for (const line of text.split("\n")) {
      const m = dnat.exec(line);
      if (m) n.set(Number(m[1]), (n.get(Number(m[1])) ?? 0) + 1);
    }
    return { n, text };
  };

  before(async () => {
    lab = await AgentLab.start("m3p", { podCidr4: "10.214.0.0/24", proxy: true, proxyWorkers: 2 });
    await lab.endpoint("deathstar", { org: "empire", class: "deathstar" });
    await lab.endpoint("tiefighter", { org: "empire", class: "tiefighter" });
    await lab.ep("deathstar").probe.listenHttp(80);
    await lab.agent.applyPolicies(STARWARS_L7, "rule1.yaml");
  });
  after(async () => {
    await lab?.destroy();
  });

  test("two workers, each without root in the proxy group; the redirect spreads over both ports", async () => {
    const pids = lab.agent.proxyPids;
    assert.equal(pids.length, 2);
    for (const pid of pids) {
      assert.ok(pid !== undefined);
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      assert.match(status, /^Uid:\s+1337\s+1337\s+1337\s+1337$/m);
      assert.match(status, /^Gid:\s+1337\s/m);
      assert.match(status, /^CapEff:\s+0000000000000000$/m);
    }
    assert.match(await tcpRedirect(), /numgen inc mod 2 map \{ 0 : 15001, 1 : 15002 \}/);
  });

  test("L7 policy holds whichever worker takes the connection", async () => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push(await get("POST", "/v1/request-landing"), await get("PUT", "/v1/exhaust-port"));
    }
    assert.deepEqual(seen, ["200", "403", "200", "403", "200", "403", "200", "403"]);
  });

  test("new connections are spread over the workers", async () => {
    for (let i = 0; i < 4; i++) assert.equal(await get("POST", "/v1/request-landing"), "200");
    const { n, text } = await servedByPort();
    assert.ok((n.get(15001) ?? 0) >= 4 && (n.get(15002) ?? 0) >= 4, `${JSON.stringify([...n])}\n${text}`);
  });

  test("a killed worker leaves the redirect: nothing reaches its port meanwhile, and it comes back restarted", async () => {
    const [first, second] = lab.agent.proxyPids;
    assert.ok(first !== undefined && second !== undefined);
    // A stranger takes the dead worker's port before its successor can (which then fails to start and
    // backs off): a connection the kernel still sent there would reach the stranger, unproxied.
    const squatter = lab.probeIn(lab.node);
    process.kill(first, "SIGKILL");
    let squatted = false;
    for (let i = 0; i < 200 && !squatted; i++) {
      squatted = await squatter.listen("tcp", 15001).then(
        () => true,
        () => false,
      );
    }
    assert.ok(squatted, "the dead worker's port was taken over");
    await until("the redirect without the dead worker", async () => !(await tcpRedirect()).includes("15001"));
    assert.match(await tcpRedirect(), /dnat ip to [0-9.]+:15002\s*$/);
    // Every connection reaches the live worker, which enforces (the stranger would echo the request back).
    for (let i = 0; i < 3; i++) {
      assert.equal(await get("PUT", "/v1/exhaust-port"), "403");
      assert.equal(await get("POST", "/v1/request-landing"), "200");
    }
    squatter.stop();
    await until(
      "the restarted worker back in the redirect",
      async () => (await tcpRedirect()).includes("numgen inc mod 2"),
      30_000,
    );
    const restarted = lab.agent.proxyPids[0];
    assert.ok(restarted !== undefined && restarted !== first, "worker 0 is a new process");
    assert.equal(lab.agent.proxyPids[1], second, "worker 1 was not touched");
    const after = [];
    for (let i = 0; i < 4; i++) after.push(await get("PUT", "/v1/exhaust-port"));
    assert.deepEqual(
      after,
      ["403", "403", "403", "403"],
      "both workers, the restarted one too, hold the policy",
    );
    assert.deepEqual(await lab.agent.datapathDiff(), []);
  });
});
