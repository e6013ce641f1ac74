// Local pairs authenticated before their first packet (issue 12 item 3).
//  - which pairs (pure): named peers of rules requiring authentication, both ends local, cluster
//    identities only, not already authenticated;
//  - for real (root): after the apply, the pair is in the kernel with no packet sent; its first
//    connection is never queued (the NFQUEUE rule's counter stays 0); a new identity the rule
//    selects is authenticated when its endpoint appears; a pair without an auth rule is not.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "../agent/e2e/harness.js";
import { runRaw } from "../../src/datapath/exec.js";
import { localPairsToPrefill } from "../../src/auth/prefill.js";
import type { DatapathState, DirectionPolicy } from "../../src/datapath/types.js";

const skip = rootSkipReason();

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-auth, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
  - fromEndpoints: [{matchLabels: {app: plain}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(what: string, f: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !(await f()); await sleep(100))
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
}

const seg = (identity: number, action: "auth" | "allow") => ({ identity, proto: 6, lo: 80, hi: 80, action }); // prettier-ignore
const dir = (segments: ReturnType<typeof seg>[]): DirectionPolicy => ({ enforced: true, segments }) as unknown as DirectionPolicy; // prettier-ignore
const ep = (identity: number, ingress: ReturnType<typeof seg>[], egress: ReturnType<typeof seg>[] = []) => ({ identity, ingress: dir(ingress), egress: dir(egress) }); // prettier-ignore

describe("local pairs authenticated ahead of their first packet", () => {
  test("which pairs: named local peers of auth rules, cluster identities, not yet authenticated", () => {
    const state = {
      endpoints: [
        // server 300: ingress from 301 (auth), 302 (auth, on another node), any (auth), 2 world (auth), 303 (allow)
        ep(300, [seg(301, "auth"), seg(302, "auth"), seg(0, "auth"), seg(2, "auth"), seg(303, "allow")]), // prettier-ignore
        // client 301: egress to 300 (auth: the same pair, once), to 304 (auth, already authenticated)
        ep(301, [], [seg(300, "auth"), seg(304, "auth")]),
      ],
    } as unknown as DatapathState;
    const local = new Set([300, 301, 303, 304]);
    const have = (s: number, d: number): boolean => s === 301 && d === 304;
    assert.deepEqual(localPairsToPrefill(state, local, have), [{ src: 301, dst: 300 }]);
  });

  test(
    "for real (needs root): the pair is in the kernel after the apply; its first connection is never queued",
    { skip },
    async () => {
      const lab = await AgentLab.start("m2ap", { spiffe: { trustDomain: "prefill.test" }, engine: { meshAuth: true } }); // prettier-ignore
      try {
        const server = await lab.endpoint("server", { app: "server" }, { tcp: [80] });
        const client = await lab.endpoint("client", { app: "client" });
        const plain = await lab.endpoint("plain", { app: "plain" });
        const auth = lab.agent.spiffe?.auth;
        assert.ok(auth, "mutual authentication runs");
        const queued = async (): Promise<number> => {
          const r = await runRaw(["iptables", "-w", "-L", "MEMBRANE-AUTH", "-v", "-n", "-x"], {
            netns: lab.node,
          });
          assert.equal(r.status, 0, r.stderr);
          return Number(/^\s*(\d+)\s+\d+\s+NFQUEUE/m.exec(r.stdout)?.[1] ?? NaN);
        };
        const pairs = async (): Promise<string[]> => (await auth.list()).map((p) => `${p.source}>${p.destination}`); // prettier-ignore
        assert.deepEqual(await pairs(), []);
        await lab.agent.applyPolicies(POLICY, "auth.yaml");
        // No packet yet: the agent authenticated the pair at policy time.
        await until("the pair authenticated ahead", async () => (await pairs()).length === 1, 10_000);
        assert.deepEqual(await pairs(), [`${client.view.identity}>${server.view.identity}`]);
        assert.equal(await queued(), 0);
        assert.equal(await client.probe.tcp(server.ip, 80, T), "ok");
        assert.equal(await plain.probe.tcp(server.ip, 80, T), "ok");
        assert.equal(await queued(), 0, "the first connection found the kernel entry: nothing was queued");

        // A new identity the rule selects: authenticated when its endpoint appears.
        const client2 = await lab.endpoint("client-b", { app: "client", tier: "b" });
        assert.notEqual(client2.view.identity, client.view.identity);
        await until(
          "the new identity's pair authenticated ahead",
          async () => (await pairs()).length === 2,
          10_000,
        );
        assert.equal(await client2.probe.tcp(server.ip, 80, T), "ok");
        assert.equal(await queued(), 0);
        assert.ok(
          !(await pairs()).some((p) => p.startsWith(`${plain.view.identity}>`)),
          "no pair without an auth rule",
        );
      } finally {
        await lab.destroy();
      }
    },
  );
});
