/**
 * What the agent-facing commands print (rd): IPv6 addresses in `get
 * endpoints`, `get status` in words, `datapath diff -o yaml`, and the
 * protocols `observe --protocol` accepts, against a real dual-stack agent.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parse } from "yaml";
import { startAgent, type RunningAgent } from "../../src/agent/run.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { compileFilter } from "../../src/observe/index.js";
import type { Flow } from "../../src/observe/flow.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { execFile } from "node:child_process";
import { cli, ROOT, type CliRun } from "./run-cli.js";

/** The CLI without blocking this process (the agent under test runs in it). */
function run(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) =>
    execFile(process.execPath, [join(ROOT, "bin/membrane.js"), ...args], { cwd: ROOT }, (e, stdout, stderr) =>
      resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout, stderr }),
    ),
  );
}

test(
  "rd: get endpoints shows IPv6, get status says when the kernel was last changed, datapath diff -o yaml works",
  {
    skip: rootSkipReason(),
    // A safety net: ten CLI processes, each a node start, took over 120 s with both cores loaded.
    timeout: 300_000,
  },
  async () => {
    const prefix = uniquePrefix("rd");
    const dir = await mkdtemp(join(tmpdir(), "membrane-rd-views-"));
    const socket = ["--socket", join(dir, "agent.sock")];
    let running: RunningAgent | undefined;
    try {
      running = await startAgent(
        {
          stateDir: join(dir, "state"),
          socketPath: join(dir, "agent.sock"),
          nodeNetns: `${prefix}-node`,
          netnsPrefix: `${prefix}-`,
          podCidr4: "10.212.0.0/24",
          podCidr6: "fd00:212::/64",
          table: `m${prefix}`,
          logGroup: 1,
          engine: {},
          logLevel: "silent",
          resyncMs: 0,
        },
        pino({ level: "silent" }),
      );
      const created = await run("endpoint", "create", "web", "--labels", "app=web", ...socket);
      assert.equal(created.code, 0, created.stderr);

      const table = await run("get", "endpoints", ...socket);
      assert.match(table.stdout, /^NAMESPACE\s+NAME\s+ID\s+IDENTITY\s+IPV4\s+IPV6\s+INGRESS/m, table.stdout);
      assert.match(table.stdout, /web\s+1\s+\d+\s+10\.212\.0\.2\s+fd00:212::2\s+open/, table.stdout);
      const json = JSON.parse((await run("get", "endpoints", "-o", "json", ...socket)).stdout) as {
        ipv6?: string;
      }[];
      assert.equal(json[0]?.ipv6, "fd00:212::2");

      const status = await run("get", "status", ...socket);
      assert.equal(status.code, 0, status.stderr);
      assert.doesNotMatch(status.stdout, /\[object Object\]|\{"/, status.stdout);
      assert.match(
        status.stdout,
        /^lastApply\s+\d+ kernel changes in [\d.]+ ms, at \d{4}-\d\d-\d\dT/m,
        status.stdout,
      );

      // One line per controller: the endpoint created above is desired and realized.
      assert.match(status.stdout, /^controller endpoints\s+desired 1, realized 1$/m, status.stdout);
      assert.match(status.stdout, /^controller policies\s+desired 0, realized 0$/m, status.stdout);
      const sj = JSON.parse((await run("get", "status", "-o", "json", ...socket)).stdout) as {
        controllers: { name: string; desired: number; realized: number }[];
      };
      assert.deepEqual(
        sj.controllers.find((c) => c.name === "endpoints"),
        { name: "endpoints", desired: 1, realized: 1 },
      );

      const yaml = await run("datapath", "diff", "-o", "yaml", ...socket);
      assert.equal(yaml.code, 0, yaml.stderr);
      assert.deepEqual(parse(yaml.stdout), { diff: [] });
      const bad = await run("datapath", "diff", "-o", "xml", ...socket);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /Allowed choices are text, json, yaml/);
      assert.match(
        (await run("datapath", "diff", "--help")).stdout,
        /-o json and -o yaml print \{"diff": \[/,
      );
    } finally {
      await running?.stop();
      await cleanupPrefix(prefix);
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test("rd: observe --help lists every protocol --protocol accepts, L7 ones included, and kafka flows match", () => {
  const help = cli("observe", "--help").stdout;
  for (const p of ["tcp", "udp", "sctp", "icmp", "icmpv6", "http", "dns", "kafka"])
    assert.match(help.replace(/\s+/g, " "), new RegExp(`--protocol <value> [^-]*\\b${p}\\b`), help);
  const kafka = { l7: { type: "REQUEST", kafka: { topic: "empire-announce" } } } as unknown as Flow;
  const http = { l7: { type: "REQUEST", http: { method: "GET" } } } as unknown as Flow;
  const match = compileFilter({ allowlist: [{ protocol: ["kafka"] }] });
  assert.equal(match(kafka), true);
  assert.equal(match(http), false);
});
