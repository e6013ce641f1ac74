/**
 * One long-lived shell that runs the namespace steps of endpoint creation,
 * so that no process is spawned from the agent's heap on the create path
 * (a spawn from Node forks its whole address space: 10-17 ms, growing with
 * the heap; a fork of this small shell costs well under a millisecond).
 *
 *   agent ──stdin: "{ <script>; } </dev/null 2>&1; echo <nonce> <id> $?"──▶ sh -s (started once,
 *         ◀─stdout: the script's output, then "<nonce> <id> <status>"──────  in the agent's namespace)
 *
 *   addNetns(name)            ip netns add <name>, then its sysctls from inside it
 *                             (nsenter --net: the network namespace only)
 *   batchIn(name, lines)      nsenter --net=/run/netns/<name> ip -batch - (the lines in a quoted
 *                             here-document: nothing in them is expanded)
 *
 * Requests run one at a time, in order. Every name and line is checked here
 * (no quote, no newline, no `$`), so no input adds script. The shell holds no
 * namespace (its children enter one and exit), never keeps the agent alive
 * (unref'd) and exits when its stdin closes. A request without an answer
 * after TIMEOUT_MS (a safety net) kills the shell and its children; the next
 * request starts a new one.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { MembraneError } from "../errors.js";
import { isNetnsName, netnsPath } from "./rtnl.js";

const TIMEOUT_MS = 30_000;
/** What an `ip -batch` line may hold: words, addresses, prefixes (planEndpoint's lines). */
const LINE = /^[A-Za-z0-9 _.:/-]{0,500}$/;

/** Sysctls of a new endpoint namespace, written before it has a device: eth0 inherits `default`. */
const SYSCTLS = [
  "net/ipv6/conf/all/accept_dad",
  "net/ipv6/conf/default/accept_dad",
  "net/ipv4/conf/all/rp_filter",
  "net/ipv4/conf/default/rp_filter",
]
  .map((k) => `echo 0 > /proc/sys/${k}`)
  .join(" && ");

export interface HelperResult {
  readonly status: number;
  /** stdout and stderr of the script, at most 2,000 characters. */
  readonly output: string;
}

interface Waiter {
  out: string;
  resolve: (r: HelperResult) => void;
}

class NetnsHelper {
  private child: ChildProcess | undefined;
  private nonce = "";
  private nextId = 1;
  /** The current shell's waiters (each shell its own: a closed shell's exit fails only its requests). */
  private waiters = new Map<number, Waiter>();

  private start(): ChildProcess {
    this.nonce = `membrane-done-${randomBytes(8).toString("hex")}`;
    // Its own process group: the safety net kills the shell and what it runs.
    const c = spawn("sh", ["-s"], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    const waiters = new Map<number, Waiter>();
    this.waiters = waiters;
    c.stdin?.on("error", () => undefined);
    c.on("error", () => undefined);
    const nonce = this.nonce;
    createInterface({ input: c.stdout! }).on("line", (line) => {
      const m = line.startsWith(nonce) ? /^\S+ (\d+) (\d+)$/.exec(line) : null;
      const first = waiters.keys().next();
      const w = first.done ? undefined : waiters.get(first.value);
      if (m === null) {
        if (w && w.out.length < 2000) w.out += line + "\n";
        return;
      }
      const id = Number(m[1]);
      const waiter = waiters.get(id);
      if (!waiter) return;
      waiters.delete(id);
      waiter.resolve({ status: Number(m[2]), output: waiter.out.trim().slice(0, 2000) });
      if (waiters.size === 0) this.hold(c, false);
    });
    c.stderr?.on("data", () => undefined); // the scripts send theirs to stdout; the shell's own is dropped
    c.on("exit", (code, signal) => {
      if (this.child === c) this.child = undefined;
      for (const [id, w] of waiters) {
        waiters.delete(id);
        w.resolve({ status: 128, output: `${w.out}the namespace helper shell exited (${code ?? signal})` });
      }
    });
    this.hold(c, false);
    return c;
  }

  /** Holds the event loop while an answer is awaited; otherwise the shell never keeps the agent alive. */
  private hold(c: ChildProcess, on: boolean): void {
    holdChild(c, on);
  }

  warm(): void {
    this.child ??= this.start();
  }

  /** Runs `script` (checked by the caller) in the shell; its status and output. */
  run(script: string): Promise<HelperResult> {
    const c = (this.child ??= this.start());
    const waiters = this.waiters; // c's
    const id = this.nextId++;
    this.hold(c, true);
    return new Promise<HelperResult>((resolve) => {
      const timer = setTimeout(() => {
        this.kill(c);
        resolve({ status: 124, output: `no answer within ${TIMEOUT_MS} ms` });
      }, TIMEOUT_MS);
      timer.unref();
      waiters.set(id, {
        out: "",
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      c.stdin?.write(`{ ${script}\n} </dev/null 2>&1; echo "${this.nonce} ${id} $?"\n`);
    });
  }

  private kill(c: ChildProcess): void {
    if (this.child === c) this.child = undefined;
    try {
      if (c.pid !== undefined) process.kill(-c.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

let helper: NetnsHelper | undefined;
const theHelper = (): NetnsHelper => (helper ??= new NetnsHelper());

/** Starts the shell ahead of the first create (the agent's start), so no create pays its spawn. */
export function warmNetnsHelper(): void {
  theHelper().warm();
}

/** Lets the shell go (it exits when its stdin closes); the next request starts a new one. */
export function closeNetnsHelper(): void {
  helper?.close();
}

function checkName(netns: string, what: string): void {
  if (!isNetnsName(netns)) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot create netns for ${what}: ${JSON.stringify(netns.slice(0, 80))} is not 1-200 of [A-Za-z0-9_.-] starting with neither "-" nor "."`,
    );
  }
}

/**
 * Creates namespace `netns` (`ip netns add`: fails when it exists) and sets its sysctls; a failure
 * after the add deletes it again. `what` names the endpoint for the error.
 */
export async function addNetns(netns: string, what: string): Promise<void> {
  checkName(netns, what);
  const path = netnsPath(netns);
  const r = await theHelper().run(
    `ip netns add ${netns} && { nsenter --net=${path} sh -c '${SYSCTLS}' || { ip netns del ${netns}; false; }; }`,
  );
  if (r.status !== 0) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot create netns ${netns} for ${what} and set its sysctls: exit ${r.status}: ${r.output}`,
      { hint: "Membrane needs root (CAP_SYS_ADMIN for the namespace's bind mount, CAP_NET_ADMIN)." },
    );
  }
}

/** Runs `ip -batch` with `lines` inside namespace `netns`; a refusal names the namespace and the line. */
export async function batchIn(netns: string, lines: readonly string[], what: string): Promise<void> {
  checkName(netns, what);
  if (lines.length === 0) return;
  const bad = lines.findIndex((l) => !LINE.test(l));
  if (bad >= 0) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot ${what} (netns ${netns}): line ${bad + 1} ${JSON.stringify(lines[bad]?.slice(0, 80))} holds a character an ip command does not`,
    );
  }
  const r = await theHelper().run(
    `nsenter --net=${netnsPath(netns)} ip -batch - <<'MEMBRANE_EOF'\n${lines.join("\n")}\nMEMBRANE_EOF`,
  );
  if (r.status !== 0) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot ${what} (netns ${netns}): ip -batch exit ${r.status}: ${r.output}`,
      { hint: "The line number in `Command failed -:N` counts the lines of the endpoint's batch." },
    );
  }
}

/** A long-lived helper process (and its pipes) keeps the event loop alive only while `on`. */
export function holdChild(c: ChildProcess, on: boolean): void {
  for (const h of [c, c.stdin, c.stdout, c.stderr]) {
    const x = h as unknown as { ref?: () => void; unref?: () => void } | null;
    if (on) x?.ref?.();
    else x?.unref?.();
  }
}
