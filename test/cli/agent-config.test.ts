// The agent's config file (src/cli/agent-config.ts) against the real `membrane agent` command:
// keys are flag names, flags override the file, unknown keys and wrong kinds are errors naming
// the key and its line.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentCommand } from "../../src/cli/commands/agent.js";
import { applyAgentConfig, parseAgentConfig } from "../../src/cli/agent-config.js";
import { MembraneError } from "../../src/errors.js";
import type { CliContext } from "../../src/cli/context.js";

async function parsed(args: string[], yaml: string): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), "membrane-cfg-"));
  try {
    const file = join(dir, "agent.yaml");
    writeFileSync(file, yaml);
    const cmd = agentCommand({} as CliContext).action(() => undefined);
    cmd.exitOverride();
    await cmd.parseAsync([...args], { from: "user" });
    applyAgentConfig(cmd, file);
    return cmd.opts();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("agent config file", () => {
  it("every key is a flag; lists and maps become the flag's comma form; flags win over the file", async () => {
    const o = await parsed(
      ["--node-name", "from-flag"],
      [
        "cluster-store: [etcd://10.0.0.5:2379, etcd://10.0.0.6:2379]",
        "node-name: from-file",
        "node-ip: 10.0.0.11",
        "node-labels: {zone: a, rack: r1}",
        "cluster-lease-ttl: 20",
        "tunnel: vxlan",
        "flows: false",
        "resync: 0",
        "",
      ].join("\n"),
    );
    assert.equal(o["clusterStore"], "etcd://10.0.0.5:2379,etcd://10.0.0.6:2379");
    assert.equal(o["nodeName"], "from-flag", "the command line overrides the file");
    assert.equal(o["nodeIp"], "10.0.0.11");
    assert.equal(o["nodeLabels"], "zone=a,rack=r1");
    assert.equal(o["clusterLeaseTtl"], "20");
    assert.equal(o["tunnel"], "vxlan");
    assert.equal(o["flows"], false);
    assert.equal(o["resync"], "0");
    assert.equal(o["stateDir"], "/var/lib/membrane", "defaults stay for keys not in the file");
  });

  it("an unknown key is an error naming the key and its line", async () => {
    await assert.rejects(
      parsed([], "node-ip: 10.0.0.1\n\nclustr-store: etcd://x:1\n"),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "CONFIG_INVALID" &&
        /line 3/.test(e.message) &&
        /unknown key "clustr-store"/.test(e.message),
    );
  });

  it("wrong kinds and bad choices name the key and line", async () => {
    await assert.rejects(parsed([], "flows: maybe\n"), /line 1: flows must be true or false/);
    await assert.rejects(parsed([], "a: 1\n"), /line 1: unknown key "a"/);
    await assert.rejects(
      parsed([], "x: 1\n".replace("x", "tunnel").replace("1", "gre")),
      /line 1: tunnel "gre" is not one of native, vxlan/,
    );
    await assert.rejects(parsed([], "node-ip: {a: {b: c}}\n"), /each value of node-ip must be a string/);
    assert.throws(() => parseAgentConfig("- a\n- b\n", "f.yaml"), /f\.yaml line 1: the file must be a map/);
    assert.throws(() => parseAgentConfig("a: 1\na: 2\n", "f.yaml"), /f\.yaml line 2/);
  });

  it("the shipped example packaging/agent.yaml is a valid config", async () => {
    const cmd = agentCommand({} as CliContext).action(() => undefined);
    await cmd.parseAsync([], { from: "user" });
    applyAgentConfig(cmd, new URL("../../../packaging/agent.yaml", import.meta.url).pathname);
    assert.equal(cmd.opts()["clusterStore"], "etcd://10.0.0.5:2379");
    assert.equal(cmd.opts()["nodeLabels"], "zone=a");
  });

  it("a missing file is a clear error naming it", async () => {
    const cmd = agentCommand({} as CliContext).action(() => undefined);
    await cmd.parseAsync([], { from: "user" });
    assert.throws(
      () => applyAgentConfig(cmd, "/nonexistent/agent.yaml"),
      /Cannot read the agent config \/nonexistent\/agent\.yaml/,
    );
  });
});
