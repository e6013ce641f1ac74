/**
 * The node side of endpoint wiring (host veth end up, fe80::1, routes to the
 * endpoint) over rtnetlink, without a process per endpoint.
 *
 *   nodeLinks(undefined).apply(ops, what)   the agent's own namespace: rtnl-ops.ts in this process
 *   nodeLinks("node1").apply(ops, what)     a named node: one JSON line to rtnl-child.js, started
 *       --{"id", "ops"}--> nsenter --net=/run/netns/node1 node rtnl-child.js     once, then kept
 *       <--{"id", "ok"}--
 *
 * With the native helper built (netns-native.ts), a named node's ops go through
 * it instead and no child is started: a Node process costs ~100 ms of CPU to
 * start, and after an agent restart the first creates waited for it.
 * The child is started on first use (or by warmNodeLinks when a node is
 * prepared), closed by closeNodeLinks (deleteNode, deleteNetns,
 * cleanupPrefix, the agent's stop) and after IDLE_MS without a request: a process inside a
 * namespace keeps it alive after `ip netns del`, so it must not outlive its use.
 * It never keeps the agent or a test alive (unref'd; it exits when its stdin closes).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import { routeAnswers, type ChildAnswer } from "./child-answers.js";
import type { LinkOp } from "./endpoint-state.js";
import { inNetns } from "./rtnl.js";
import { applyLinkOps } from "./rtnl-ops.js";
import { nativeApply, nativeNetns } from "./netns-native.js";

const IDLE_MS = 300_000;
const TIMEOUT_MS = 30_000;

type Answer = ChildAnswer;

class NodeLinksChild {
  private child: ChildProcess | undefined;
  private nextId = 1;
  /** The current child's waiters (each child its own: a closed child's exit fails only its requests). */
  private waiters = new Map<number, (a: Answer) => void>();
  private idle: NodeJS.Timeout | undefined;

  constructor(private readonly netns: string) {}

  private spawnChild(): ChildProcess {
    const script = fileURLToPath(new URL("./rtnl-child.js", import.meta.url));
    const argv = [...inNetns(this.netns), process.execPath, script];
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    c.stdin?.on("error", () => undefined);
    const err: string[] = [];
    c.stderr?.on("data", (b: Buffer) => void (err.join("").length < 2000 && err.push(b.toString())));
    this.hold(c, false);
    const waiters = new Map<number, (a: Answer) => void>();
    this.waiters = waiters;
    routeAnswers(c.stdout!, waiters);
    c.on("exit", (code) => {
      if (this.child === c) this.child = undefined;
      for (const [id, w] of waiters) {
        waiters.delete(id);
        w({ ok: false, error: `the node's rtnetlink process exited (${code}): ${err.join("").trim()}` });
      }
    });
    c.on("error", () => undefined);
    return c;
  }

  /** Holds the event loop while an answer is awaited; otherwise the child never keeps the agent alive. */
  private hold(c: ChildProcess, on: boolean): void {
    if (on) c.ref();
    else c.unref();
    for (const s of [c.stdin, c.stdout, c.stderr]) {
      const h = s as unknown as { ref?: () => void; unref?: () => void } | null;
      if (on) h?.ref?.();
      else h?.unref?.();
    }
  }

  warm(): void {
    this.child ??= this.spawnChild();
    this.touch();
  }

  private touch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.close(), IDLE_MS);
    this.idle.unref();
  }

  async apply(ops: readonly LinkOp[]): Promise<Answer> {
    this.warm();
    const c = this.child as ChildProcess;
    const waiters = this.waiters; // c's
    const id = this.nextId++;
    this.hold(c, true);
    return new Promise<Answer>((resolve) => {
      const timer = setTimeout(() => {
        waiters.delete(id);
        if (waiters.size === 0) this.hold(c, false);
        c.kill("SIGKILL");
        resolve({ ok: false, error: `no answer within ${TIMEOUT_MS} ms` });
      }, TIMEOUT_MS);
      timer.unref();
      waiters.set(id, (a) => {
        clearTimeout(timer);
        if (waiters.size === 0) this.hold(c, false);
        this.touch();
        resolve(a);
      });
      c.stdin?.write(JSON.stringify({ id, ops }) + "\n");
    });
  }

  close(): void {
    clearTimeout(this.idle);
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

const children = new Map<string, NodeLinksChild>();

/** Applies `ops` in the node's namespace (absent = this process's own); `what` names the step for the error. */
export async function applyNodeOps(
  netns: string | undefined,
  ops: readonly LinkOp[],
  what: string,
  opts: { bulk?: boolean } = {},
): Promise<void> {
  if (ops.length === 0) return;
  // Built: the native helper enters the node's namespace itself (netns-native.ts), no Node child.
  // Not for bulk requests (a cold start's every host end): measured at 250 endpoints, the agent's
  // cold start took 17.6 s through the native helper against 6.7 s through the node's child.
  if (netns !== undefined && nativeNetns() && opts.bulk !== true) return nativeApply(netns, ops, what);
  let a: Answer;
  if (netns === undefined) {
    a = await applyLinkOps(ops).then(
      () => ({ ok: true }),
      (e: unknown) => ({ ok: false, error: e instanceof Error ? e.message : String(e) }),
    );
  } else {
    let c = children.get(netns);
    if (c === undefined) children.set(netns, (c = new NodeLinksChild(netns)));
    a = await c.apply(ops);
  }
  if (!a.ok) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot ${what} (netns ${netns ?? "(own)"}) over rtnetlink: ${a.error ?? "refused"}`,
      {
        hint: "EEXIST/ENODEV: an interface is missing or in the way; the next reconcile of the endpoint repairs it.",
      },
    );
  }
}

/** Starts the node's rtnetlink process ahead of the first endpoint (no-op for the agent's own namespace). */
export function warmNodeLinks(netns: string | undefined): void {
  if (netns === undefined || nativeNetns()) return; // the native helper serves it (applyNodeOps)
  let c = children.get(netns);
  if (c === undefined) children.set(netns, (c = new NodeLinksChild(netns)));
  c.warm();
}

/** Stops the rtnetlink process of every node namespace `match` accepts (a namespace is being deleted). */
export function closeNodeLinks(match: (netns: string) => boolean): void {
  for (const [ns, c] of children) {
    if (!match(ns)) continue;
    c.close();
    children.delete(ns);
  }
}
