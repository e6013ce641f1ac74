/**
 * The Star Wars demo through the agent, on real packets (needs root): L3/L4
 * policy, and re-identification when an endpoint's labels change.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

const RULE1 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: rule1
  namespace: default
spec:
  endpointSelector:
    matchLabels: {org: empire, class: deathstar}
  ingress:
  - fromEndpoints:
    - matchLabels: {org: empire}
    toPorts:
    - ports:
      - {port: "80", protocol: TCP}
`;

describe("agent e2e: Star Wars L3/L4 (root: netns, nftables, real packets)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  before(async () => {
    lab = await AgentLab.start("sw");
    await lab.endpoint("deathstar", { org: "empire", class: "deathstar" }, { tcp: [80, 443] });
    await lab.endpoint("tiefighter", { org: "empire", class: "tiefighter" }, { tcp: [80] });
    await lab.endpoint("xwing", { org: "alliance", class: "xwing" }, { tcp: [80] });
  });
  after(async () => {
    await lab?.destroy();
  });

  const attempts = async (): Promise<string[]> => {
    const ds = lab.ep("deathstar").ip;
    const list = [
      ["tiefighter", ds, 80],
      ["xwing", ds, 80],
      ["tiefighter", ds, 443],
      ["deathstar", lab.ep("xwing").ip, 80],
    ] as const;
    return Promise.all(
      list.map(
        async ([from, to, port]) =>
          `${from} -> ${to === ds ? "deathstar" : "xwing"}:${port} ${await lab.ep(from).probe.tcp(to, port, T)}`,
      ),
    );
  };

  test("with no policy every ship reaches the deathstar on every port", async () => {
    assert.deepEqual(await attempts(), [
      "tiefighter -> deathstar:80 ok",
      "xwing -> deathstar:80 ok",
      "tiefighter -> deathstar:443 ok",
      "deathstar -> xwing:80 ok",
    ]);
  });

  test("rule1: tiefighter reaches deathstar:80, xwing is dropped, tiefighter:443 is dropped", async () => {
    const rep = await lab.agent.applyPolicies(RULE1, "rule1.yaml");
    assert.deepEqual(
      rep.policies,
      [{ kind: "CiliumNetworkPolicy", namespace: "default", name: "rule1" }].map((p) => ({
        ...p,
        status: "created",
      })),
    );
    assert.ok(rep.kernelOps > 0, "the policy changed the kernel");
    assert.deepEqual(await attempts(), [
      "tiefighter -> deathstar:80 ok",
      "xwing -> deathstar:80 timeout",
      "tiefighter -> deathstar:443 timeout",
      "deathstar -> xwing:80 ok",
    ]);
    assert.deepEqual(await lab.agent.datapathDiff(), []);
    const ds = lab.agent.getEndpoint("default", "deathstar");
    assert.deepEqual([ds.ingress.enforced, ds.egress.enforced], [true, false]);
  });

  test("xwing relabelled org=empire reaches deathstar:80, and is dropped again when relabelled back", async () => {
    const ds = lab.ep("deathstar").ip;
    const xw = lab.ep("xwing");
    const before = lab.agent.getEndpoint("default", "xwing").identity;
    const tie = lab.agent.getEndpoint("default", "tiefighter").identity;
    assert.equal(await xw.probe.tcp(ds, 80, T), "timeout");

    const v = await lab.agent.labelEndpoint("default", "xwing", { org: "empire" }, false);
    assert.deepEqual(v.labels, { org: "empire", class: "xwing" });
    assert.notEqual(v.identity, before, "new labels, new identity");
    assert.notEqual(v.identity, tie, "class still differs from the tiefighter's");
    assert.equal(v.ipv4, xw.ip, "the address stays");
    assert.deepEqual(
      [await xw.probe.tcp(ds, 80, T), await xw.probe.tcp(ds, 443, T)],
      ["ok", "timeout"],
      "as empire: port 80 only",
    );

    const back = await lab.agent.labelEndpoint("default", "xwing", { org: "alliance" }, false);
    assert.notEqual(back.identity, v.identity, "back to an alliance identity");
    assert.equal(await xw.probe.tcp(ds, 80, T), "timeout");
    assert.equal(await lab.ep("tiefighter").probe.tcp(ds, 80, T), "ok", "control");
    assert.deepEqual(await lab.agent.datapathDiff(), []);
  });
});
