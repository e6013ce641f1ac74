/**
 * The proxy snapshot carries the ipcache's exact addresses as the engine's
 * live HostTable (never serialised whole); through a real supervisor and
 * proxy process, remote endpoints are named by their identities and one
 * more remote endpoint costs the proxy one entry.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildDatapathState } from "../../src/agent/desired.js";
import { buildProxySnapshot } from "../../src/agent/proxy-snapshot.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { rootSkipReason, withSupervisor } from "../proxy/supervisor-harness.js";

function world(): PolicyEngine {
  const e = new PolicyEngine();
  e.upsertEndpoint({ name: "api", namespace: "prod", labels: { app: "api" }, ips: ["10.0.0.1"] });
  for (let i = 0; i < 300; i++)
    e.upsertRemoteEndpoint({
      ip: `10.1.${i >> 8}.${i & 255}`,
      namespace: "prod",
      labels: { app: `web${i % 7}` },
    });
  e.regenerate();
  return e;
}

const stateOf = (e: PolicyEngine): ReturnType<typeof buildDatapathState> => ({
  ...buildDatapathState(e, [
    { namespace: "prod", name: "api", id: 1, hostIfname: "pxsh1", ipv4: "10.0.0.1" },
  ]),
  hosts: e.ipcache.hosts,
});

describe("buildProxySnapshot and the ipcache's exact addresses", () => {
  test("hosts is the engine's live table, by reference: nothing copied per enforce", () => {
    const e = world();
    const s = buildProxySnapshot(e, stateOf(e), 1);
    assert.equal(s.hosts, e.ipcache.hosts);
  });
  test("without hosts in the state, the snapshot has none (the ipcache is all of it)", () => {
    const e = world();
    const { hosts: _unused, ...state } = stateOf(e);
    assert.equal("hosts" in buildProxySnapshot(e, state, 1), false);
  });
});

describe(
  "remote endpoints reach the proxy process by deltas (needs root)",
  { skip: rootSkipReason() },
  () => {
    test("the proxy names remote addresses with their identity; one more remote endpoint sends one entry", () =>
      withSupervisor(async (sup) => {
        const e = world();
        await sup.push(buildProxySnapshot(e, stateOf(e), 1));
        assert.equal(sup.stats.hostEntries, e.ipcache.hosts.size);
        for (const ip of ["10.1.0.0", "10.1.1.43", "10.0.0.1"])
          assert.equal(await sup.identityOf(ip), e.ipcache.lookup(ip).identity, ip);

        const before = sup.stats;
        const id = e.upsertRemoteEndpoint({ ip: "10.1.9.9", namespace: "prod", labels: { app: "new" } });
        e.regenerate();
        await sup.push(buildProxySnapshot(e, stateOf(e), 2));
        assert.equal(sup.stats.hostEntries - before.hostEntries, 1);
        assert.equal(sup.stats.hostsDeltas - before.hostsDeltas, 1);
        assert.equal(await sup.identityOf("10.1.9.9"), id.id);
      }));
  },
);
