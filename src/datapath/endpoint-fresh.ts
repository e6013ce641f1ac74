/**
 * A new endpoint namespace, its sysctls and its inside configured from one
 * process spawned by Node (3 execs: unshare, sh, ip):
 *
 *   openFreshNetns(netns)      create /run/netns/<netns> (a file, no process), spawn
 *                                unshare --net=/run/netns/<netns> sh -c '<sysctls> && echo ready && exec ip -batch -'
 *                              and wait for "ready": the namespace exists and is bound to its file
 *                              (unshare waits for its bind mount before it runs sh).
 *     ... the caller creates the veth with eth0 directly in it (rtnl.ts) ...
 *   configure(lines)           the `ip -batch` lines on stdin, stdin closed, exit status awaited.
 *   abort()                    kills it (the caller deletes the namespace).
 *
 * The sysctls are written with shell builtins before eth0 exists, to `all`
 * and `default`: a new device copies the namespace's `default` values, so
 * eth0 is born with accept_dad=0 and rp_filter=0 and needs no write of its
 * own. `ip -batch` reads its stdin line by line and waits for it, so it
 * configures eth0 only after the caller wrote the lines, i.e. after the veth exists.
 *
 * When /run/netns is not yet the shared mount `ip netns add` makes of it (no
 * namespace was added on this machine since boot), the namespace is added
 * with `ip netns add` (which prepares /run/netns) and entered with nsenter.
 */
import { spawn } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { MembraneError } from "../errors.js";
import { ip, runRaw } from "./exec.js";
import { netnsPath } from "./rtnl.js";

/** Sysctls of a new endpoint namespace (constants: nothing from input reaches this shell line). */
const SYSCTLS = [
  "net/ipv6/conf/all/accept_dad",
  "net/ipv6/conf/default/accept_dad",
  "net/ipv4/conf/all/rp_filter",
  "net/ipv4/conf/default/rp_filter",
]
  .map((k) => `echo 0 > /proc/sys/${k}`)
  .join(" && ");

const READY_TIMEOUT_MS = 30_000;

let dirShared = false;

/** Is /run/netns a mount point of its own (as `ip netns add` leaves it)? Read once true, no process. */
async function netnsDirReady(): Promise<boolean> {
  if (dirShared) return true;
  const info = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  dirShared = info.split("\n").some((l) => l.split(" ")[4] === "/run/netns" && / shared:\d+/.test(l));
  return dirShared;
}

export interface FreshNetns {
  /** Feeds `lines` to the `ip -batch` inside the namespace and waits for it; a refusal names the namespace and the error. */
  configure(lines: readonly string[]): Promise<void>;
  /** Stops the process (the caller deletes the namespace). */
  abort(): void;
  /** Is the `ip -batch` still waiting (a pooled namespace whose process died is not used)? */
  alive(): boolean;
}

/**
 * Creates namespace `netns` with its sysctls set and an `ip -batch` waiting inside it. `what` names
 * the endpoint for errors. `opts.idle` (a pooled namespace): the waiting process does not keep this
 * process alive until configure() (it exits when this process does: its stdin closes).
 */
export async function openFreshNetns(
  netns: string,
  what: string,
  opts: { idle?: boolean } = {},
): Promise<FreshNetns> {
  const path = netnsPath(netns);
  let enter: string;
  if (await netnsDirReady()) {
    try {
      // As `ip netns add` creates it: empty, mode 0, and never one that exists.
      await (await open(path, "wx", 0o000)).close();
    } catch (e) {
      throw new MembraneError("NETNS_FAILED", `Cannot create netns ${netns} for ${what}: ${String(e)}`, {
        cause: e,
      });
    }
    enter = "unshare";
  } else {
    await ip(["netns", "add", netns]);
    enter = "nsenter";
  }
  const c = spawn(enter, [`--net=${path}`, "sh", "-c", `${SYSCTLS} && echo ready && exec ip -batch -`], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  c.stdin.on("error", () => undefined);
  const hold = (on: boolean): void => {
    for (const h of [c, c.stdin, c.stdout, c.stderr]) {
      const x = h as unknown as { ref?: () => void; unref?: () => void };
      if (on) x.ref?.();
      else x.unref?.();
    }
  };
  const err: Buffer[] = [];
  c.stderr.on("data", (b: Buffer) => err.push(b));
  let gone = false;
  const exited = new Promise<number>((resolve) => {
    c.on("exit", () => void (gone = true));
    c.on("close", (status) => resolve(status ?? 128));
    c.on("error", () => resolve(127));
  });
  const stderr = (): string => Buffer.concat(err).toString("utf8").trim().slice(0, 2000);
  const ready = await new Promise<boolean>((resolve) => {
    let out = "";
    const timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
    c.stdout.on("data", (b: Buffer) => {
      out += b.toString("utf8");
      if (out.includes("ready\n")) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(out.includes("ready\n"));
    });
  });
  if (!ready) {
    c.kill("SIGKILL");
    const status = await exited;
    // The bind mount may or may not be there: `ip netns del` undoes both (and the file).
    await runRaw(["ip", "netns", "del", netns]);
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot create netns ${netns} for ${what} and set its sysctls (${enter}): exit ${status}: ${stderr()}`,
      { hint: "Membrane needs root (CAP_SYS_ADMIN for the namespace's bind mount, CAP_NET_ADMIN)." },
    );
  }
  if (opts.idle === true) hold(false);
  return {
    async configure(lines) {
      hold(true);
      c.stdin.end(lines.length === 0 ? "" : lines.join("\n") + "\n");
      const status = await exited;
      if (status !== 0) {
        throw new MembraneError(
          "NETNS_FAILED",
          `Cannot configure eth0 of ${what} (netns ${netns}): ip -batch exit ${status}: ${stderr()}`,
          { hint: "The line number in `Command failed -:N` counts the lines of the endpoint's batch." },
        );
      }
    },
    abort() {
      c.kill("SIGKILL");
    },
    alive: () => !gone && !c.stdin.writableEnded,
  };
}
