/**
 * A real runtime end to end (needs root, podman and containernetworking-plugins),
 * issue 17 item 3: Debian's podman 4.3.1 with its CNI backend and private state
 * (test/cni/podman.ts) runs a container from a local root file system on a
 * network whose conflist is bridge + membrane-cni; the container becomes an
 * endpoint with its identity, policy allows and refuses real packets, `podman
 * stop` removes the endpoint, and `podman network ls/inspect` see the network.
 *
 * podman 4.3.1 does not pass `--label`s to CNI plugins (nor K8S_POD_NAMESPACE:
 * only IgnoreUnknown=1 and K8S_POD_NAME=<container name>), but it forwards its
 * own CNI_ARGS environment variable: the identity's labels come from there.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import { CniLab } from "./harness.js";
import { Podman } from "./podman.js";
import { until } from "../support/until.js";

const skip =
  rootSkipReason() ??
  (spawnSync("sh", ["-c", "command -v podman"]).status !== 0
    ? "needs podman (apt-get install podman)"
    : existsSync("/usr/lib/cni/bridge")
      ? undefined
      : "needs containernetworking-plugins");

describe("podman with membrane-cni (root)", { skip: skip ?? false }, () => {
  test("podman run on a Membrane network: an endpoint with the CNI_ARGS identity, reached by the client and refused to the other; podman stop removes it", async () => {
    const c = await CniLab.start("bridge", "10.89.10.0/24");
    const podman = new Podman(join(c.dir, "podman"), c.lab.node);
    try {
      const net = c.rt.p.conflist.name;
      await podman.prepare(c.pluginDir, c.rt.p.conflist);
      const lab = c.lab;
      await lab.endpoint("client", { app: "client" });
      await lab.endpoint("other", { app: "other" });
      await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");

      assert.match(await podman.run(["network", "ls", "--format", "{{.Name}}"]), new RegExp(`^${net}$`, "m"));
      const inspect = JSON.parse(await podman.run(["network", "inspect", net])) as { driver: string }[];
      assert.equal(inspect[0]?.driver, "bridge");

      const id = (
        await podman.runServer("Web_1", net, ["--label", "app=server"], {
          CNI_ARGS: "K8S_POD_NAMESPACE=default;MEMBRANE_LABELS=app:server",
        })
      ).trim();
      assert.match(id, /^[0-9a-f]{64}$/);
      // ADD returned only once enforced: the endpoint is there as soon as `podman run` is.
      const ep = lab.agent.getEndpoint("default", "web-1");
      assert.deepEqual(ep.labels, { net, app: "server" });
      assert.ok(ep.ingress.enforced);
      const inspected = JSON.parse(await podman.run(["inspect", id])) as {
        NetworkSettings: { Networks: Record<string, { IPAddress: string }> };
      }[];
      const ip = inspected[0]?.NetworkSettings.Networks[net]?.IPAddress ?? "";
      assert.equal(ip, ep.ipv4);
      await until("the server listens", async () => (await lab.ep("client").probe.tcp(ip, 80, T)) === "ok");
      assert.equal(await lab.ep("other").probe.tcp(ip, 80, T), "timeout", "other -> container refused");

      await podman.run(["stop", "-t", "0", id]);
      assert.throws(() => lab.agent.getEndpoint("default", "web-1"), /Cannot find endpoint/);
      await podman.run(["rm", id]);
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      await podman.destroy();
      await c.destroy();
    }
  });

  test("podman run while the agent is down fails and leaves no container network behind", async () => {
    const c = await CniLab.start("bridge", "10.89.11.0/24");
    const podman = new Podman(join(c.dir, "podman"), c.lab.node);
    try {
      const net = c.rt.p.conflist.name;
      await podman.prepare(c.pluginDir, c.rt.p.conflist);
      await c.lab.stopAgent();
      await assert.rejects(podman.runServer("down", net, []), /Cannot reach the agent/);
      const veths = JSON.parse(
        await c.lab.ip(["-n", c.lab.node, "-j", "link", "show", "type", "veth"]),
      ) as unknown[];
      assert.deepEqual(veths, [], "no veth left in the node");
    } finally {
      await podman.destroy();
      await c.destroy();
    }
  });
});
