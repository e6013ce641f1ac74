/**
 * Node's permission model as a sandbox for asking a benchmark script about itself (`--help`,
 * `--help-json`): the script may read files and load addons (to load its modules) but cannot start
 * a process, start a worker or write a file, so it cannot create a network namespace,
 * an nftables table or anything else even if it ignored the question and started measuring (it
 * fails with ERR_ACCESS_DENIED instead). `npm run bench` asks its benchmarks for their flags this
 * way, and test/bench/cli.test.ts runs every script's --help in it.
 */
import { spawn } from "node:child_process";

/** Node's flags for the sandbox: `--permission` where it is stable (Node 22.13+), else the experimental one. */
export function sandboxFlags(): string[] {
  const on = process.allowedNodeEnvironmentFlags.has("--permission")
    ? "--permission"
    : "--experimental-permission";
  // Addons are allowed: the netlink package loads its raw-socket addon when imported. A netlink socket
  // reaches only the caller's own namespace, and no namespace is made without a process (`ip netns add`).
  return [on, "--allow-fs-read=*", "--allow-addons"];
}

export interface Answer {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `node script ...args` in the sandbox (NODE_OPTIONS) and collects what it printed. `timeoutMs` is a safety net for
 * a script that hangs (it is then killed; code null), not a measurement.
 */
export function askSandboxed(
  script: string,
  args: readonly string[],
  opts: { timeoutMs?: number; allowChildren?: boolean } = {},
): Promise<Answer> {
  // The sandbox goes in NODE_OPTIONS too, so every node process the script starts (when it may:
  // the runner asking its benchmarks) is sandboxed whatever the script does; only the script
  // itself gets --allow-child-process. --no-warnings: the permission model's "experimental"
  // warning is not the script's answer.
  const inherited = process.env["NODE_OPTIONS"] ?? "";
  const env = {
    ...process.env,
    NODE_OPTIONS: [inherited, "--no-warnings", ...sandboxFlags()].join(" ").trim(),
  };
  const flags = opts.allowChildren === true ? ["--allow-child-process"] : [];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...flags, script, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    p.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    p.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
