/**
 * Connection denial through the agent: `membrane apply` of a tcp_connect
 * TracingPolicy, `membrane endpoint exec` in the endpoint (the launcher joins
 * the endpoint's cgroup), the refusal exported as a Tetragon process_kprobe
 * line with policy_name and sock_arg. Namespaces `cnag-...`, removed by the lab.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { policyEventToRuntime } from "../../../src/agent/controllers/runtime-bridge.js";
import { endpointCgroupPath } from "../../../src/datapath/endpoint-cgroup.js";
import type { RuntimeSink } from "../../../src/runtime/events.js";
import { AgentLab } from "../../agent/e2e/harness.js";
import { runtimeSkipReason, until } from "./helpers.js";

const skip = runtimeSkipReason();
const ROOT = join(import.meta.dirname, "../../../..");

function membrane(socket: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  // Options before a `--` (endpoint exec passes what follows to the command).
  const at = args.indexOf("--");
  const argv =
    at < 0 ? [...args, "--socket", socket] : [...args.slice(0, at), "--socket", socket, ...args.slice(at)];
  return new Promise((resolve) =>
    execFile(process.execPath, [join(ROOT, "bin/membrane.js"), ...argv], (e, out, err) =>
      resolve({ code: e ? Number(e.code ?? 1) : 0, out, err }),
    ),
  );
}

const POLICY = `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: no-db-port}
spec:
  podSelector: {matchLabels: {app: client}}
  kprobes:
  - call: tcp_connect
    args: [{index: 0, type: sock}]
    selectors:
    - matchArgs:
      - {index: 0, operator: DPort, values: [8081]}
      matchActions: [{action: Override, argError: -1}]
`;

const connect = (ip: string, port: number): string =>
  `import socket\ns=socket.socket()\ns.settimeout(10)\ntry:\n s.connect(('${ip}',${port}));print('connected')\nexcept OSError as e: print('errno',e.errno)`;

describe("connection denial through the agent (root)", { skip }, () => {
  test("membrane apply + endpoint exec: the selected endpoint's connect is refused with EPERM and exported with policy_name; delete lifts it", async () => {
    const lab = await AgentLab.start("cnag");
    try {
      const sock = lab.options.socketPath;
      const client = await lab.endpoint("client", { app: "client" });
      const other = await lab.endpoint("other", { app: "other" });
      const server = await lab.endpoint("server", { app: "server" }, { tcp: [8080, 8081] });
      const file = join(lab.dir, "tp.yaml");
      writeFileSync(file, POLICY);
      const applied = await membrane(sock, "apply", "-f", file);
      assert.equal(applied.code, 0, applied.err);
      assert.ok(
        existsSync(endpointCgroupPath(client.view.netns) ?? "/nonexistent"),
        "the endpoint has a cgroup",
      );
      const exec = async (ep: string, port: number): Promise<string> => {
        const r = await membrane(
          sock,
          "endpoint",
          "exec",
          ep,
          "--",
          "python3",
          "-c",
          connect(server.ip, port),
        );
        return r.out.trim() || `exit ${r.code}: ${r.err.trim()}`;
      };
      assert.equal(await exec("client", 8081), "errno 1");
      assert.equal(await exec("client", 8080), "connected");
      assert.equal(await exec("other", 8081), "connected", "an unselected endpoint");
      await until("the refusal event", () => lab.agent.tracing.recent().length >= 1);
      const e = lab.agent.tracing.recent()[0];
      assert.ok(e);
      const stub = { processOf: () => undefined } as unknown as RuntimeSink;
      const out = policyEventToRuntime(e, stub, "node1");
      assert.ok("process_kprobe" in out);
      const line = { process_kprobe: out.process_kprobe };
      assert.deepEqual(
        {
          fn: line.process_kprobe.function_name,
          policy: line.process_kprobe.policy_name,
          action: line.process_kprobe.action,
          arg: line.process_kprobe.args?.[0],
        },
        {
          fn: "tcp_connect",
          policy: "no-db-port",
          action: "KPROBE_ACTION_OVERRIDE",
          arg: { sock_arg: { family: "AF_INET", protocol: "IPPROTO_TCP", daddr: server.ip, dport: 8081 } },
        },
      );
      const deleted = await membrane(sock, "delete", "-f", file);
      assert.equal(deleted.code, 0, deleted.err);
      assert.equal(await exec("client", 8081), "connected");
      void other;
    } finally {
      await lab.destroy();
    }
  });
});
