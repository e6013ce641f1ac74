import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
`;

function world(): PolicyEngine {
  const e = new PolicyEngine();
  e.upsertEndpoint({ name: "api", namespace: "prod", labels: { app: "api" }, ips: ["10.0.0.1"] });
  for (const p of parsePolicies(POLICY, "p.yaml")) e.upsertPolicy(p);
  e.regenerate();
  return e;
}
const fromIp = (ip: string) =>
  ({
    from: { kind: "ip", ip },
    to: { kind: "endpoint", name: "api", namespace: "prod" },
    proto: "TCP",
    port: 80,
  }) as const;

describe("remote endpoints (addresses of other nodes' endpoints)", () => {
  test("a remote endpoint's address carries the identity of its labels, and policy selects it", () => {
    const e = world();
    assert.equal(e.decide(fromIp("10.1.0.7")).verdict, "deny");
    const id = e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "web" } });
    assert.equal(e.ipcache.lookup("10.1.0.7").identity, id.id);
    assert.equal(e.decide(fromIp("10.1.0.7")).verdict, "allow");
    // The same labels on a local endpoint share the identity (identities are per label set).
    const local = e.upsertEndpoint({
      name: "web",
      namespace: "prod",
      labels: { app: "web" },
      ips: ["10.0.0.2"],
    });
    assert.equal(local.id, id.id);
  });

  test("relabelling moves the address to the new identity; deleting forgets it", () => {
    const e = world();
    e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "web" } });
    const before = e.regenerate();
    assert.ok(Array.isArray(before));
    e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "other" } });
    assert.equal(e.decide(fromIp("10.1.0.7")).verdict, "deny");
    assert.equal(e.deleteRemoteEndpoint("10.1.0.7"), true);
    assert.equal(e.deleteRemoteEndpoint("10.1.0.7"), false);
    assert.equal(e.ipcache.lookup("10.1.0.7").entry, undefined);
    assert.equal(e.remoteEndpoints().length, 0);
  });

  test("an address cannot be both local and remote, and bad addresses are refused", () => {
    const e = world();
    assert.throws(
      () => e.upsertRemoteEndpoint({ ip: "10.0.0.1", namespace: "prod", labels: {} }),
      /belongs to local endpoint prod\/api/,
    );
    e.upsertRemoteEndpoint({ ip: "10.1.0.9", namespace: "prod", labels: {} });
    assert.throws(
      () => e.upsertEndpoint({ name: "x", namespace: "prod", labels: {}, ips: ["10.1.0.9"] }),
      /belongs to a remote endpoint/,
    );
    assert.throws(() => e.upsertRemoteEndpoint({ ip: "nope", namespace: "prod", labels: {} }), /not an IP/);
  });

  test("a new identity from a remote endpoint recomputes only the endpoints whose selectors see it", () => {
    const e = world();
    e.upsertEndpoint({ name: "idle", namespace: "prod", labels: { app: "idle" }, ips: ["10.0.0.3"] });
    e.regenerate();
    e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "web" } });
    assert.deepEqual(e.regenerate(), ["prod/api"]);
    // An address with an identity already known changes no computed policy at all.
    e.upsertRemoteEndpoint({ ip: "10.1.0.8", namespace: "prod", labels: { app: "web" } });
    assert.deepEqual(e.regenerate(), []);
  });

  test("fork() carries remote endpoints", () => {
    const e = world();
    e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "web" } });
    assert.equal(e.fork().decide(fromIp("10.1.0.7")).verdict, "allow");
  });

  test("a node's address keeps its reserved identity: no endpoint, remote or local, may take it", () => {
    const e = world();
    e.setNodeAddress("10.9.9.9", "remote-node");
    const node = e.ipcache.lookup("10.9.9.9").identity;
    assert.throws(
      () => e.upsertRemoteEndpoint({ ip: "10.9.9.9", namespace: "prod", labels: { app: "web" } }),
      /10\.9\.9\.9 is a node's address/,
    );
    assert.throws(
      () => e.upsertEndpoint({ name: "x", namespace: "prod", labels: {}, ips: ["10.9.9.9"] }),
      /10\.9\.9\.9 is a node's address/,
    );
    assert.equal(e.ipcache.lookup("10.9.9.9").identity, node);
  });
});

describe("remote endpoints' named ports (egress to a named port of another node's pod)", () => {
  const EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "http", protocol: TCP}]}]}]
`;
  const toWeb = (port: number) =>
    ({
      from: { kind: "endpoint", name: "client", namespace: "prod" },
      to: { kind: "ip", ip: "10.1.0.7" },
      proto: "TCP",
      port,
    }) as const;

  test("the name resolves to the remote pod's port, as for a local one; gone with the pod's ports", () => {
    const e = new PolicyEngine();
    e.upsertEndpoint({ name: "client", namespace: "prod", labels: { app: "client" }, ips: ["10.0.0.5"] });
    for (const p of parsePolicies(EGRESS, "p.yaml")) e.upsertPolicy(p);
    e.upsertRemoteEndpoint({
      ip: "10.1.0.7",
      namespace: "prod",
      labels: { app: "web" },
      namedPorts: [{ name: "http", port: 8080, protocol: "TCP" }],
    });
    e.regenerate();
    assert.equal(e.decide(toWeb(8080)).verdict, "allow", "http is 8080 on the remote web pod");
    assert.equal(e.decide(toWeb(80)).verdict, "deny");
    e.upsertRemoteEndpoint({ ip: "10.1.0.7", namespace: "prod", labels: { app: "web" } });
    e.regenerate();
    assert.equal(e.decide(toWeb(8080)).verdict, "deny", "the pod no longer names the port");
  });
});
