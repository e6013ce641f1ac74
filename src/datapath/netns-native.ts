/**
 * The native namespace helper (native/membrane-netns.c, built into
 * dist/bin/membrane-netns): one long-lived process that makes endpoint
 * namespaces and applies LinkOps inside any named namespace with setns(2) and
 * rtnetlink, spawning nothing per request.
 *
 *   agent ──"<id> add <netns>"──────────────────────────▶ membrane-netns (started once, in the
 *         ──"<id> ns <netns|-> up eth0 addr ... route ..."▶  agent's namespace, back in it after
 *         ◀─"<id> ok" | "<id> err <step>: <errno text>"───  every request)
 *
 * Why: a process start costs ~10 ms of wall clock here (fork + exec + dynamic
 * loading), and a new endpoint used five (`ip netns add`, nsenter + sh for its
 * sysctls, nsenter + ip -batch for its inside); the helper does each step in
 * microseconds. Without the binary (no gcc at build time) the callers keep the
 * shell path (netns-helper.ts, node-links.ts): nativeNetns() says which.
 *
 * Requests run one at a time, in order. Every word is checked here (and again
 * in the helper) before it is sent: names, interface names, addresses, no
 * space or newline, so no input adds a step. The helper never keeps the agent
 * alive (unref'd), exits when its stdin closes, and a request without an
 * answer after TIMEOUT_MS (a safety net) kills it; the next request starts a
 * new one.
 */
import { holdChild } from "./netns-helper.js";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { isIPv4 } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import type { LinkOp } from "./endpoint-state.js";
import { isNetnsName } from "./rtnl.js";

const TIMEOUT_MS = 30_000;
/** A word of a request: a name, an interface, an address or prefix. */
const WORD = /^[A-Za-z0-9_.:/-]{1,200}$/;

/** dist/bin/membrane-netns, beside the CNI shim (scripts/build-native.mjs). */
const BINARY = fileURLToPath(new URL("../../bin/membrane-netns", import.meta.url));

interface Answer {
  readonly ok: boolean;
  readonly error: string;
}

class NativeHelper {
  private child: ChildProcess | undefined;
  private nextId = 1;
  /**
   * The waiters of the current helper. Each helper has its own map: a helper let go (close())
   * exits later, and its exit must fail only its own requests, not those already sent to the next.
   */
  private waiters = new Map<number, (a: Answer) => void>();

  private start(): ChildProcess {
    const c = spawn(BINARY, [], { stdio: ["pipe", "pipe", "pipe"] });
    const waiters = new Map<number, (a: Answer) => void>();
    this.waiters = waiters;
    c.stdin?.on("error", () => undefined);
    c.on("error", () => undefined);
    const err: string[] = [];
    c.stderr?.on("data", (b: Buffer) => void (err.join("").length < 2000 && err.push(b.toString())));
    createInterface({ input: c.stdout! }).on("line", (line) => {
      const m = /^(\d+) (ok|err)(?: (.*))?$/.exec(line);
      if (m === null) return;
      const w = waiters.get(Number(m[1]));
      if (!w) return;
      waiters.delete(Number(m[1]));
      if (waiters.size === 0) this.hold(c, false);
      w({ ok: m[2] === "ok", error: (m[3] ?? "").slice(0, 2000) });
    });
    c.on("exit", (code, signal) => {
      if (this.child === c) this.child = undefined;
      for (const [id, w] of waiters) {
        waiters.delete(id);
        w({ ok: false, error: `the namespace helper exited (${code ?? signal}) ${err.join("").trim()}` });
      }
    });
    this.hold(c, false);
    return c;
  }

  /** Holds the event loop while an answer is awaited; otherwise the helper never keeps the agent alive. */
  private hold(c: ChildProcess, on: boolean): void {
    holdChild(c, on);
  }

  warm(): void {
    this.child ??= this.start();
  }

  run(words: readonly string[]): Promise<Answer> {
    const c = (this.child ??= this.start());
    const waiters = this.waiters; // c's
    const id = this.nextId++;
    this.hold(c, true);
    return new Promise<Answer>((resolve) => {
      const timer = setTimeout(() => {
        waiters.delete(id);
        if (this.child === c) this.child = undefined;
        c.kill("SIGKILL");
        resolve({ ok: false, error: `no answer within ${TIMEOUT_MS} ms` });
      }, TIMEOUT_MS);
      timer.unref();
      waiters.set(id, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
      c.stdin?.write(`${id} ${words.join(" ")}\n`);
    });
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

let helper: NativeHelper | undefined;
let enabled = true;

/** Is the native helper in use (built, and not switched off by useNativeNetns(false))? */
export function nativeNetns(): boolean {
  return enabled && existsSync(BINARY);
}

/** Switches the native helper off (the shell path then) or on again: for A/B measurements and tests. */
export function useNativeNetns(on: boolean): void {
  enabled = on;
}

/** Starts the helper ahead of the first create (the agent's start), when it is in use. */
export function warmNativeNetns(): void {
  if (nativeNetns()) (helper ??= new NativeHelper()).warm();
}

/** Lets the helper go (it exits when its stdin closes); the next request starts a new one. */
export function closeNativeNetns(): void {
  helper?.close();
}

/** The words of `ops` for the helper (the same messages as rtnl-ops.ts). */
export function opWords(ops: readonly LinkOp[]): string[] {
  const words: string[] = [];
  for (const o of ops) {
    if (o.op === "up") words.push("up", o.ifname);
    else if (o.op === "addr") words.push("addr", o.ifname, o.cidr, o.nodad ? "1" : "0");
    else {
      // As `ip route replace` and rtnl-ops.ts: an IPv4 route without a gateway is scope link.
      const v4 = o.dst === "default" ? o.gateway !== undefined && isIPv4(o.gateway) : !o.dst.includes(":");
      const link = o.scopeLink === true || (v4 && o.gateway === undefined);
      words.push("route", o.dst, o.dev, o.gateway ?? "-", link ? "l" : "u");
    }
  }
  return words;
}

async function request(words: readonly string[], what: string, netns: string): Promise<void> {
  const bad = words.find((w) => !WORD.test(w));
  if (bad !== undefined) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot ${what} (netns ${netns}): ${JSON.stringify(bad.slice(0, 80))} is not a name or an address`,
    );
  }
  const a = await (helper ??= new NativeHelper()).run(words);
  if (!a.ok) {
    throw new MembraneError("NETNS_FAILED", `Cannot ${what} (netns ${netns}) over rtnetlink: ${a.error}`, {
      hint: "EEXIST/ENODEV: an interface is missing or in the way; the next reconcile of the endpoint repairs it.",
    });
  }
}

function checkName(netns: string, what: string): void {
  if (!isNetnsName(netns)) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot ${what}: netns ${JSON.stringify(netns.slice(0, 80))} is not 1-200 of [A-Za-z0-9_.-] starting with neither "-" nor "."`,
    );
  }
}

/**
 * Creates namespace `netns` (fails when it exists) with its sysctls (accept_dad, rp_filter of
 * `all` and `default` = 0); a failure after the add removes it again. `what` names the endpoint.
 */
export async function nativeAddNetns(netns: string, what: string): Promise<void> {
  checkName(netns, `create netns for ${what}`);
  await request(["add", netns], `create netns ${netns} for ${what} and set its sysctls`, netns);
}

/**
 * The helper's bounds on one request line (native/membrane-netns.c: MAX_LINE 4096 bytes, MAX_WORDS
 * 256 words with the id), with room to spare. Over them the helper refused the request: a line over
 * 4 KiB ended it, 256 words or more got an answer without the request's id (the request waited for
 * its safety net). A bulk request (a cold start's every host end: ~13 words an endpoint) was always
 * over, so every endpoint fell to its slow path, one reconcile each (the "~44 ms per endpoint").
 */
export const REQUEST_MAX_BYTES = 3800;
export const REQUEST_MAX_WORDS = 240;

/** `words` of ops cut into requests that fit the helper's bounds, each entering `ns` first. */
export function requestLines(ns: string, ops: readonly LinkOp[]): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let bytes = 0;
  for (const o of ops) {
    const w = opWords([o]);
    const b = w.reduce((n, x) => n + x.length + 1, 0);
    if (cur.length > 0 && (cur.length + w.length + 3 > REQUEST_MAX_WORDS || bytes + b > REQUEST_MAX_BYTES)) {
      out.push(cur);
      cur = [];
    }
    if (cur.length === 0) {
      cur = ["ns", ns];
      bytes = 20 + ns.length + 4; // the id, "ns", the name
    }
    cur.push(...w);
    bytes += b;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Applies `ops` in namespace `netns` (absent = the agent's own); `what` names the step for the error.
 * Many ops go as several requests, in order; the first refusal stops the rest (as within one).
 */
export async function nativeApply(
  netns: string | undefined,
  ops: readonly LinkOp[],
  what: string,
): Promise<void> {
  if (ops.length === 0) return;
  if (netns !== undefined) checkName(netns, what);
  for (const words of requestLines(netns ?? "-", ops)) await request(words, what, netns ?? "(own)");
}
