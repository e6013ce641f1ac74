/**
 * Requests and kernel transactions cut short (needs root): SIGTERM does not
 * wait for a running `nft`, a request whose client gave up before it started
 * is dropped, an acknowledged apply survives kill -9, an apply cut short by
 * kill -9 is reported as "may or may not have been applied", and re-applying
 * an unchanged file changes nothing.
 *
 * A slow kernel transaction is made by putting a wrapper named `nft` first
 * on PATH: while its hold file exists, `nft -f` (a transaction) waits before
 * running the real nft. Reads (`nft list`) are never held.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AgentClient } from "../../../src/agent/client.js";
import type { EndpointView } from "../../../src/agent/agent.js";
import { ROOT } from "../../cli/run-cli.js";
import { AgentLab, AgentProcess, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

/**
 * Each policy also admits a CIDR of its own: a new prefix changes the table's shared part (the
 * ipcache's prefix map), which `nft -f` writes, so that these applies are transactions the
 * wrapper below can hold or fail (changes of endpoint parts alone go over nfnetlink, no `nft`).
 */
const policy = (name: string, port: number): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
  - fromCIDR: ["198.51.100.${port % 256}/32"]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
`;

/** The real nft, looked up before any wrapper is on PATH. */
const REAL_NFT = spawnSync("sh", ["-c", "command -v nft"], { encoding: "utf8" }).stdout.trim() || "nft";

/** A held `nft`: hold() makes the next transactions wait, release() lets them run. */
class SlowNft {
  readonly dir = mkdtempSync(join(tmpdir(), "membrane-st-nft-"));
  private readonly holdFile = join(this.dir, "hold");
  private readonly pidFile = join(this.dir, "pid");
  private readonly failFile = join(this.dir, "fail");
  private readonly oldPath = process.env["PATH"] ?? "";

  constructor() {
    const real = REAL_NFT;
    writeFileSync(
      join(this.dir, "nft"),
      `#!/bin/sh
if [ "$1" = "-f" ] && [ -e ${this.failFile} ]; then
  echo "Error: refused by the test" >&2
  exit 1
fi
if [ "$1" = "-f" ] && [ -e ${this.holdFile} ]; then
  echo $$ > ${this.pidFile}.tmp && mv ${this.pidFile}.tmp ${this.pidFile}
  while [ -e ${this.holdFile} ]; do sleep 0.05; done
fi
exec ${real} "$@"
`,
    );
    chmodSync(join(this.dir, "nft"), 0o755);
    // Children (the agent's `ip netns exec ... nft`) find the wrapper first.
    process.env["PATH"] = `${this.dir}:${this.oldPath}`;
  }
  hold(): void {
    rmSync(this.pidFile, { force: true });
    writeFileSync(this.holdFile, "");
  }
  release(): void {
    rmSync(this.holdFile, { force: true });
  }
  /** Makes every transaction fail (true) or run (false). */
  failing(on: boolean): void {
    if (on) writeFileSync(this.failFile, "");
    else rmSync(this.failFile, { force: true });
  }
  /** The held transaction's process id, once one is held. */
  async held(): Promise<number> {
    for (let i = 0; i < 600 && !existsSync(this.pidFile); i++) await new Promise((r) => setTimeout(r, 50));
    return Number(readFileSync(this.pidFile, "utf8"));
  }
  destroy(): void {
    this.release();
    process.env["PATH"] = this.oldPath;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `membrane ARGS` as a child process that can outlive an agent. */
function cliAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, "bin/membrane.js"), ...args], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function endpoints(api: AgentClient, lab: AgentLab): Promise<void> {
  for (const name of ["server", "client"]) {
    const view = (await api.request("POST", "/v1/endpoints", {
      name,
      namespace: "default",
      labels: { app: name },
    })) as EndpointView;
    await lab.attach(view);
  }
}

describe("agent e2e: requests and transactions cut short (root)", { skip: skip ?? false }, () => {
  test("SIGTERM kills a running nft transaction instead of waiting for it; the restarted agent reconciles", async () => {
    const lab = await AgentLab.prepare("st");
    const nft = new SlowNft();
    const procs: AgentProcess[] = [];
    try {
      procs.push(await AgentProcess.start(lab.options));
      const api = new AgentClient({ socketPath: lab.options.socketPath });
      await endpoints(api, lab);
      nft.hold();
      const apply = api.request("POST", "/v1/policies", { text: policy("held", 80), file: "held.yaml" }).then(
        () => new Error("answered"),
        (e: unknown) => e,
      );
      const pid = await nft.held();
      (procs[0] as AgentProcess).kill("SIGTERM");
      await (procs[0] as AgentProcess).waitExit(20_000); // safety net: a waiting agent never exits
      assert.equal(alive(pid), false, "the held nft was killed");
      assert.match(
        String(await apply),
        /may or may not have been applied: check with `membrane get policies`/,
      );
      nft.release();
      procs.push(await AgentProcess.start(lab.options));
      // The store held the change before the kernel did: the restart enforces it.
      const names = ((await api.request("GET", "/v1/policies")) as { name: string }[]).map((p) => p.name);
      assert.deepEqual(names, ["held"]);
      assert.deepEqual(await api.request("GET", "/v1/datapath/diff"), { diff: [] });
    } finally {
      nft.destroy();
      for (const p of procs) {
        p.kill("SIGTERM");
        await p.waitExit().catch(() => p.kill("SIGKILL"));
      }
      await lab.destroy();
    }
  });

  test("a request whose client gave up while it was queued is dropped; the client is told how to check", async () => {
    const nft = new SlowNft();
    const lab = await AgentLab.start("st");
    try {
      await endpoints(new AgentClient({ socketPath: lab.options.socketPath }), lab);
      nft.hold();
      const busy = lab.agent.applyPolicies(policy("first", 80), "first.yaml");
      await nft.held();
      const impatient = new AgentClient({ socketPath: lab.options.socketPath, timeoutMs: 500 });
      await assert.rejects(
        impatient.request("POST", "/v1/policies", { text: policy("late", 81), file: "late.yaml" }),
        /the request may still be applied .*check with `membrane get policies`/,
      );
      for (let i = 0; i < 400 && !lab.logs.some((l) => String(l["msg"]).startsWith("client went away")); i++)
        await new Promise((r) => setTimeout(r, 50));
      nft.release();
      await busy;
      await lab.agent.applyPolicies(policy("after", 82), "after.yaml"); // queued after "late": its turn has passed
      assert.deepEqual(
        lab.agent
          .listPolicies()
          .map((p) => p.name)
          .sort(),
        ["after", "first"],
      );
    } finally {
      nft.destroy();
      await lab.destroy();
    }
  });

  test("an apply whose transaction failed says the change is stored; re-applying it unchanged enforces it", async () => {
    const nft = new SlowNft();
    const lab = await AgentLab.start("st");
    try {
      await endpoints(new AgentClient({ socketPath: lab.options.socketPath }), lab);
      nft.failing(true);
      await assert.rejects(lab.agent.applyPolicies(policy("p", 80), "p.yaml"), (e: unknown) => {
        assert.match(String((e as { hint?: string }).hint), /The change is stored/);
        return true;
      });
      nft.failing(false);
      assert.notDeepEqual(await lab.agent.datapathDiff(), [], "the kernel lags");
      const again = await lab.agent.applyPolicies(policy("p", 80), "p.yaml");
      assert.deepEqual(
        again.policies.map((p) => p.status),
        ["unchanged"],
      );
      assert.ok(again.kernelOps > 0, "but the kernel is brought up to date");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      nft.destroy();
      await lab.destroy();
    }
  });

  test("kill -9: an acknowledged apply is kept, an apply cut short is reported as unknown, an unchanged re-apply changes nothing", async () => {
    const lab = await AgentLab.prepare("st");
    const nft = new SlowNft();
    const procs: AgentProcess[] = [];
    const dir = mkdtempSync(join(tmpdir(), "membrane-st-files-"));
    const sock = ["--socket", lab.options.socketPath];
    try {
      procs.push(await AgentProcess.start(lab.options));
      const api = new AgentClient({ socketPath: lab.options.socketPath });
      await endpoints(api, lab);
      writeFileSync(join(dir, "acked.yaml"), policy("acked", 80));
      writeFileSync(join(dir, "cut.yaml"), policy("cut", 81));

      const acked = await cliAsync(["apply", "-f", join(dir, "acked.yaml"), ...sock]);
      assert.equal(acked.code, 0, acked.stderr);
      assert.match(acked.stdout, /acked\s+created/);
      (procs[0] as AgentProcess).kill("SIGKILL");
      await (procs[0] as AgentProcess).waitExit();
      procs.push(await AgentProcess.start(lab.options));
      const listed = async (): Promise<string[]> =>
        ((await api.request("GET", "/v1/policies")) as { name: string }[]).map((p) => p.name).sort();
      assert.deepEqual(await listed(), ["acked"], "acknowledged before kill -9: kept");

      const status = (await api.request("GET", "/v1/status")) as { revision: number };
      const again = await cliAsync(["apply", "-f", join(dir, "acked.yaml"), ...sock]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /acked\s+unchanged/);
      assert.match(again.stdout, /nothing changed/);
      const json = await cliAsync(["apply", "-f", join(dir, "acked.yaml"), "-o", "json", ...sock]);
      const r = JSON.parse(json.stdout) as { kernelOps: number; revision: number };
      assert.equal(r.kernelOps, 0);
      assert.equal(r.revision, status.revision, "no new revision");

      nft.hold();
      const cut = cliAsync(["apply", "-f", join(dir, "cut.yaml"), ...sock]);
      const pid = await nft.held();
      (procs[1] as AgentProcess).kill("SIGKILL");
      await (procs[1] as AgentProcess).waitExit();
      const out = await cut;
      assert.notEqual(out.code, 0);
      assert.doesNotMatch(out.stdout, /created/);
      assert.match(out.stderr, /may or may not have been applied: check with `membrane get policies`/);
      process.kill(pid, "SIGKILL"); // the held nft outlived its agent
      nft.release();
      procs.push(await AgentProcess.start(lab.options));
      // Whatever the store held when the agent died is what the restarted agent enforces.
      assert.deepEqual(await api.request("GET", "/v1/datapath/diff"), { diff: [] });
      assert.ok(["acked", "acked,cut"].includes((await listed()).join(",")));
    } finally {
      nft.destroy();
      rmSync(dir, { recursive: true, force: true });
      for (const p of procs) {
        p.kill("SIGTERM");
        await p.waitExit().catch(() => p.kill("SIGKILL"));
      }
      await lab.destroy();
    }
  });
});
