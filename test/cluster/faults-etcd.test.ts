// Fault (issue 11 item 6): etcd stopped while traffic flows (needs root and the etcd binary). Two
// in-process agents in node namespaces on one etcd (lease TTL 5 s); the outage lasts 20 s here, long
// enough for every lease to run out, and 5 minutes in the soak run:
//
//   MEMBRANE_SOAK_ETCD_DOWN=300 node --test dist/test/cluster/faults-etcd.test.js
//
// While etcd is down: a long-lived connection across nodes keeps exchanging data, new connections
// are allowed and dropped as before, local endpoints with known identities keep working, an endpoint
// with new labels is closed (reserved:init, the status says why). Once etcd is back: full resync
// within 60 s (every node's keys and claims in etcd, every ipcache complete, the late endpoint open),
// and it stays complete after the leases of before the outage ran out.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ipcachePrefix, nodeKey } from "../../src/cluster/keys.js";
import { ID } from "../../src/identity/reserved.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import type { AgentLab, LabEndpoint } from "../agent/e2e/harness.js";
import { rootSkipReason } from "../datapath/harness.js";
import {
  checkVerdicts,
  Flow,
  ipcacheId,
  knows,
  loadavg,
  SERVER_FROM_CLIENT,
  sleep,
  startNodes,
  T,
  until,
} from "./faults-lab.js";
import { TestEtcd } from "./identities-etcd.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const DOWN_S = Number(process.env["MEMBRANE_SOAK_ETCD_DOWN"] ?? 20);
const TTL = 5;

const idsError = (lab: AgentLab): string | undefined =>
  lab.agent.status().controllers.find((c) => c.name === "identities")?.lastError?.message;

describe("fault: etcd stopped with traffic flowing (root, etcd)", { skip }, () => {
  test(
    `etcd down ${DOWN_S} s: enforcement and the established connection unchanged, known identities work, a new one stays closed; full resync within 60 s after etcd returns`,
    {
      timeout: (DOWN_S + 240) * 1000,
    },
    async () => {
      const etcd = new TestEtcd();
      await etcd.start();
      const check = etcd.store("membrane/");
      const nodes = await startNodes("e", [etcd.endpoint], 2, TTL).catch(async (e: unknown) => {
        await check.close();
        await etcd.destroy();
        throw e;
      });
      const [a, b] = nodes.labs as [AgentLab, AgentLab];
      const [na, nb] = nodes.names as [string, string];
      const watch = { on: true };
      try {
        await a.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
        await until("b has the policy", () => b.agent.listPolicies().length === 1);
        const server = await b.endpoint("server", { app: "server" }, { tcp: [80, 8080] });
        const client = await a.endpoint("client", { app: "client" });
        const intruder = await a.endpoint("intruder", { app: "intruder" });
        const localServer = await a.endpoint("server-a", { app: "server" }, { tcp: [80] });
        await until("a and b know each other's pods", () => knows(b, client.ip) && knows(a, server.ip));
        await checkVerdicts("before", client, intruder, server.ip);
        const flow = await Flow.open(client, server.ip, 80);
        // Through the outage and the return: every node keeps knowing the other's pods at every moment
        // (a flap, e.g. keys deleted with an old lease and put again, would drop their new connections).
        const gaps: string[] = [];
        const watcher = (async () => {
          while (watch.on) {
            const lost = [
              ...[client, intruder, localServer]
                .filter((e) => !knows(b, e.ip))
                .map((e) => `b forgot ${e.view.name}`),
              ...(knows(a, server.ip) ? [] : ["a forgot server"]),
            ];
            if (lost.length > 0) gaps.push(`${new Date().toISOString()} ${lost.join(", ")}`);
            await sleep(100);
          }
        })();

        // etcd goes away.
        await etcd.stop();
        const down = Date.now();
        const late = await a.endpoint("late", { app: "late" }, { tcp: [80] });
        const client2 = await a.endpoint("client2", { app: "client" });
        assert.equal(late.view.identity, ID.init, "an endpoint with new labels is closed: reserved:init");
        assert.equal(client2.view.identity, client.view.identity, "known labels keep their number");
        assert.match(idsError(a) ?? "", /stay closed/, "the status says why the endpoint is closed");
        await until(
          "a's status: the store unreachable",
          () => a.running?.cluster?.status().store.connected === false,
        );
        const during = async (when: string): Promise<void> => {
          await checkVerdicts(when, client, intruder, server.ip);
          assert.deepEqual(
            [
              await client.probe.tcp(localServer.ip, 80, 3000),
              await client2.probe.tcp(localServer.ip, 80, 3000),
              await intruder.probe.tcp(localServer.ip, 80, T),
              await client2.probe.tcp(server.ip, 80, T),
              await client.probe.tcp(late.ip, 80, T),
              await late.probe.tcp(localServer.ip, 80, T),
            ],
            ["ok", "ok", "timeout", "timeout", "timeout", "timeout"],
            `${when}: local endpoints and known identities work; the new endpoint is closed both ways; ` +
              "an endpoint created meanwhile is unknown to other nodes (dropped there) until etcd returns",
          );
        };
        await during("etcd down");
        while (Date.now() - down < DOWN_S * 1000) {
          await sleep(Math.min(10_000, DOWN_S * 1000 - (Date.now() - down)));
          if (Date.now() - down < DOWN_S * 1000 - 2000)
            await during(`etcd down ${Math.round((Date.now() - down) / 1000)} s`);
        }
        assert.equal(a.agent.getEndpoint("default", "late").identity, ID.init, "still closed");
        assert.ok(knows(b, client.ip) && knows(a, server.ip), "peers' pods stay known while etcd is down");

        // etcd returns.
        await etcd.start();
        const back = Date.now();
        const synced = async (): Promise<boolean> => {
          try {
            return await resynced(check, [
              { lab: a, node: na, peer: b, eps: [client, intruder, localServer, late, client2] },
              { lab: b, node: nb, peer: a, eps: [server] },
            ]);
          } catch {
            return false; // etcd not answering yet
          }
        };
        const resyncMs = await until("full resync after etcd returned", synced, 60_000);
        // The leases of before the outage run out TTL s after etcd's start: nothing may go with them.
        await sleep(Math.max(0, (TTL + 3) * 1000 - (Date.now() - back)));
        assert.ok(await synced(), "still complete after the old leases expired");
        watch.on = false;
        await watcher;
        assert.deepEqual(gaps.slice(0, 5), [], "no node forgot a peer's pod at any moment");
        for (const lab of [a, b]) {
          const lease = lab.running?.cluster?.status().lease;
          assert.deepEqual(
            [lease?.state, lease?.renewals],
            ["held", 0],
            "the node kept its lease through the outage: etcd refreshed it, nothing was put again",
          );
        }
        const lateId = a.agent.getEndpoint("default", "late").identity;
        assert.ok(lateId >= 256, `late has a cluster number (${lateId})`);
        assert.equal(ipcacheId(b, late.ip), lateId, "b judges late by its number");
        assert.equal(await client.probe.tcp(late.ip, 80, 3000), "ok", "late is open");
        assert.equal(await client2.probe.tcp(server.ip, 80, 3000), "ok", "b knows client2 now");
        await checkVerdicts("after", client, intruder, server.ip);
        const sends = await flow.stop(Math.floor(DOWN_S * 2));

        // Propagation after the resync: an endpoint created on a, known on b.
        const t0 = Date.now();
        const fresh = await a.endpoint("fresh", { app: "client" });
        await until("b knows the fresh endpoint", () => knows(b, fresh.ip));
        const propagationMs = Date.now() - t0;
        assert.equal(await fresh.probe.tcp(server.ip, 80, 3000), "ok", "fresh (a client) reaches the server");
        console.log(
          `# etcd down ${DOWN_S} s: full resync ${resyncMs} ms after etcd returned, propagation after ${propagationMs} ms, ${sends} round trips on the long-lived connection, load ${await loadavg()}`,
        );
      } finally {
        watch.on = false;
        await nodes.destroy();
        await check.close();
        await etcd.destroy();
      }
    },
  );
});

interface NodeCase {
  readonly lab: AgentLab;
  readonly node: string;
  readonly peer: AgentLab;
  readonly eps: readonly LabEndpoint[];
}

/** Everything in place again: sessions connected, leases held, keys and claims in etcd, peers' ipcaches complete. */
async function resynced(check: TestEtcdStore, cases: readonly NodeCase[]): Promise<boolean> {
  for (const c of cases) {
    const st = c.lab.running?.cluster?.status();
    if (st?.store.connected !== true || st.lease.state !== "held") return false;
    if (c.lab.agent.status().controllers.find((x) => x.name === "identities")?.lastError) return false;
    if ((await check.get(nodeKey(c.node))) === undefined) return false;
    const published = new Map(
      (await check.list(ipcachePrefix(c.node))).kvs.map((kv) => [
        kv.key.slice(ipcachePrefix(c.node).length),
        (JSON.parse(kv.value) as { identity: number }).identity,
      ]),
    );
    const claims = new Set(
      (await check.list(`cluster/identities/${c.node}/`)).kvs.map((kv) => Number(kv.key.split("/").pop())),
    );
    for (const e of c.eps) {
      const id = c.lab.agent.getEndpoint("default", e.view.name).identity;
      if (id < 256 || published.get(e.ip) !== id || !claims.has(id)) return false;
      if (ipcacheId(c.peer, e.ip) !== id) return false;
    }
    if (published.size !== c.eps.length) return false;
  }
  return true;
}

type TestEtcdStore = ReturnType<TestEtcd["store"]>;
