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

/** Polls `cond` every 50 ms; a safety net of `ms`, never a measure. */
async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

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
  /** Established connections the proxy workers hold, by their listening port. */
  const heldByPort = async (): Promise<Map<number, number>> => {
    const out = await lab.sh(lab.node, ["ss", "-Htn", "state", "established"]);
    const n = new Map<number, number>();
    for (const m of out.matchAll(/:(1500[12])\s/g)) n.set(Number(m[1]), (n.get(Number(m[1])) ?? 0) + 1);
    return n;
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
    const probe = lab.ep("tiefighter").probe;
    for (let i = 0; i < 4; i++) assert.equal(await probe.open(`held${i}`, ds(), 80), "ok");
    const held = await heldByPort();
    assert.ok((held.get(15001) ?? 0) >= 1 && (held.get(15002) ?? 0) >= 1, JSON.stringify([...held]));
  });

  test("a killed worker leaves the redirect at once, no request passes unproxied, and it comes back restarted", async () => {
    const [first, second] = lab.agent.proxyPids;
    assert.ok(first !== undefined && second !== undefined);
    process.kill(first, "SIGKILL");
    // Until the agent has moved the redirect, the dead port's share is reset by the kernel (never forwarded).
    const during = await get("PUT", "/v1/exhaust-port");
    assert.notEqual(during, "200");
    await until(async () => !(await tcpRedirect()).includes("15001"), "the redirect without the dead worker");
    assert.match(await tcpRedirect(), /dnat ip to [0-9.]+:15002\s*$/);
    // Every connection now reaches the live worker, which enforces.
    for (let i = 0; i < 3; i++) {
      assert.equal(await get("PUT", "/v1/exhaust-port"), "403");
      assert.equal(await get("POST", "/v1/request-landing"), "200");
    }
    await until(
      async () => (await tcpRedirect()).includes("numgen inc mod 2"),
      "the restarted worker back in the redirect",
    );
    const restarted = lab.agent.proxyPids[0];
    assert.ok(restarted !== undefined && restarted !== first, "worker 0 is a new process");
    assert.equal(lab.agent.proxyPids[1], second, "worker 1 was not touched");
    assert.deepEqual(
      [await get("PUT", "/v1/exhaust-port"), await get("PUT", "/v1/exhaust-port")],
      ["403", "403"],
      "the restarted worker holds the policy",
    );
    assert.deepEqual(await lab.agent.datapathDiff(), []);
  });
});
