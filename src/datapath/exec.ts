/**
 * Running `ip` and `nft`, optionally inside a network namespace.
 *
 *   run(["ip", "link"], {netns: "n1"})  ->  ip netns exec n1 ip link
 *   nftApply(script, {netns})           ->  ip netns exec n1 nft -f -   (script on stdin)
 *   nftListJson("inet", "membrane")     ->  nft -j -n list table inet membrane
 *
 * Failures become MembraneErrors carrying the command's stderr: for nft that
 * names the line of the transaction the kernel refused.
 *
 * A command given a `signal` runs in its own process group; aborting the signal kills the
 * group (`ip netns exec` and the nft it runs) with SIGKILL and does not wait
 * for it to finish its work. An nft transaction is atomic: killed before the
 * kernel committed it, the kernel keeps the old state.
 */
import { spawn } from "node:child_process";
import { MembraneError, type ErrorCode } from "../errors.js";

export interface RunOptions {
  /** Network namespace to run in (`ip netns exec`); the current one when absent. */
  netns?: string;
  /** Written to the command's stdin. */
  stdin?: string | Buffer;
  /** Error code when the command fails; NETNS_FAILED by default. */
  code?: ErrorCode;
  /** What the caller was trying to do, for the message ("Cannot <what>: ..."). */
  what?: string;
  /** Kill the command after this many ms (default 30 s). */
  timeoutMs?: number;
  /** Kills the command's process group when aborted (e.g. the agent stops). */
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  status: number;
}

/** Runs argv (in `opts.netns` when given) and returns its output; never throws on a non-zero exit. */
export function runRaw(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = opts.netns === undefined ? [...argv] : ["ip", "netns", "exec", opts.netns, ...argv];
  const [cmd, ...args] = full;
  if (cmd === undefined) return Promise.reject(new Error("runRaw: empty argv"));
  if (opts.signal?.aborted) return Promise.reject(aborted(argv));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 30_000,
      // Its own process group when it can be aborted, so that the kill reaches everything it started.
      detached: opts.signal !== undefined,
    });
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    opts.signal?.addEventListener("abort", kill, { once: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      opts.signal?.removeEventListener("abort", kill);
      reject(e);
    });
    child.on("close", (status, signal) => {
      opts.signal?.removeEventListener("abort", kill);
      if (opts.signal?.aborted) {
        reject(aborted(argv));
        return;
      }
      resolve({
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + (signal ? `(killed by ${signal})` : ""),
        status: status ?? 128,
      });
    });
    child.stdin.on("error", () => undefined); // the command may exit before reading stdin
    child.stdin.end(opts.stdin ?? "");
  });
}

function aborted(argv: readonly string[]): MembraneError {
  return new MembraneError(
    argv[0] === "nft" ? "NFT_APPLY_FAILED" : "NETNS_FAILED",
    `Cannot finish ${argv.join(" ")}: stopped (the agent is stopping); a transaction cut short leaves the old state`,
  );
}

/** Runs argv and throws a MembraneError (with stderr) when it exits non-zero. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  let r: RunResult;
  try {
    r = await runRaw(argv, opts);
  } catch (e) {
    if (e instanceof MembraneError) throw e;
    throw new MembraneError(
      opts.code ?? "NETNS_FAILED",
      `Cannot ${opts.what ?? "run " + argv[0]}: ${String(e)}`,
      {
        hint: `Is ${argv[0]} installed (apt-get install nftables iproute2) and are you root?`,
        cause: e,
      },
    );
  }
  if (r.status !== 0) {
    const where = opts.netns === undefined ? "" : ` (netns ${opts.netns})`;
    throw new MembraneError(
      opts.code ?? "NETNS_FAILED",
      `Cannot ${opts.what ?? "run " + argv.join(" ")}${where}: exit ${r.status}: ${r.stderr.trim()}`,
      { hint: "The command's own error is quoted above; Membrane needs root (CAP_NET_ADMIN)." },
    );
  }
  return r.stdout;
}

/** Runs `ip [-n NETNS] ARGS`. */
export function ip(args: readonly string[], netns?: string): Promise<string> {
  const argv = netns === undefined ? ["ip", ...args] : ["ip", "-n", netns, ...args];
  return run(argv, { what: `run ${argv.join(" ")}` });
}

/** Applies an nft script (one atomic transaction) with `nft -f -`. */
/** Whole-table transactions and read-backs at cluster scale can take long; stop() interrupts them. */
const NFT_TIMEOUT_MS = 300_000;

export async function nftApply(
  script: string,
  opts: { netns?: string; signal?: AbortSignal } = {},
): Promise<void> {
  await run(["nft", "-f", "-"], {
    ...opts,
    stdin: script,
    code: "NFT_APPLY_FAILED",
    what: "apply the nftables transaction",
    // A whole table at cluster scale (1,000 endpoints, 50,000 addresses) takes
    // tens of seconds on a busy 2-core machine; stop() kills it at any time.
    timeoutMs: NFT_TIMEOUT_MS,
  });
}

/**
 * Reads a table with `nft -j -n list table FAMILY NAME` (numeric protocols).
 * Returns undefined when the table does not exist.
 */
export async function nftListJson(
  family: string,
  table: string,
  opts: { netns?: string; signal?: AbortSignal } = {},
  /** Only this map of the table (`nft -j list map`), undefined when the table or map is missing. */
  map?: string,
): Promise<unknown> {
  const what = map === undefined ? ["table", family, table] : ["map", family, table, map];
  const r = await runRaw(["nft", "-j", "-n", "list", ...what], { ...opts, timeoutMs: NFT_TIMEOUT_MS });
  if (r.status !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new MembraneError(
      "NFT_APPLY_FAILED",
      `Cannot list nftables table ${family} ${table}: ${r.stderr.trim()}`,
      {
        hint: "Check that nft is installed and that the network namespace exists.",
      },
    );
  }
  return JSON.parse(r.stdout) as unknown;
}
