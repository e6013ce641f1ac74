/**
 * Map element deltas straight to the kernel, without `nft` (host addresses, and
 * policy elements when a change adds or removes no chain or map).
 *
 *   SetElemWriter.apply(table, [{set, add: [element], del: [element]}])   (elements: encode.ts)
 *     --the batch's bytes (abi/nft-setelem-wire.ts), one binary frame--> nfnl/child.js
 *     (node netns, started once, kept: numbers the messages, sends) --one nf_tables batch-->
 *     <--{"id", "ok"}--                                                (atomic: all or nothing)
 *
 * Why a process: Node cannot enter a network namespace; a socket opened in
 * the child belongs to the node's. The child is native/membrane-nfnl.c (dist/bin/membrane-nfnl,
 * ready in about a millisecond: the first change after an agent restart waited for a Node
 * writer to boot, 50-300 ms here), or child.js (same frames, same answers) without the build's
 * native programs. With `inProcess` (the LB table), no process at all: the agent's own socket in the
 * namespace (socket.ts), when the addon is built. Why not `nft`: see abi/nft-setelem-wire.ts
 * (its cost grows with the table, ours with the change). A refused batch, a
 * dead child or no answer within the timeout is an error: the caller falls
 * back to planning against the kernel with `nft` (fail safe, never half-applied:
 * the kernel applies a batch whole or not at all).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import { routeAnswers, type ChildAnswer } from "../child-answers.js";
import { inNetns } from "../rtnl.js";
import { setElemBatch, type SetElemOps } from "../../abi/nft-setelem-wire.js";
import { frameBatch, type NfMsg } from "../../abi/nft-object-wire.js";
import { nfnlSocketAvailable, NfnlSocket } from "./socket.js";

/** One map's element changes, encoded (encode.ts). */
export type ElementOps = SetElemOps;

const ERRNO: Record<number, string> = {
  1: "EPERM (no CAP_NET_ADMIN in the node namespace)",
  2: "ENOENT (a table, chain, map or element is missing)",
  16: "EBUSY (a chain or map is still referenced)",
  17: "EEXIST (an element exists with another value)",
  22: "EINVAL",
};

/** dist/bin/membrane-nfnl (scripts/build-native.mjs). */
const NATIVE = fileURLToPath(new URL("../../../bin/membrane-nfnl", import.meta.url));

/** The writer program: the native one when built (`MEMBRANE_NFNL_WRITER=node` forces child.js, for tests). */
export function writerCommand(): string[] {
  if (process.env["MEMBRANE_NFNL_WRITER"] !== "node" && existsSync(NATIVE)) return [NATIVE];
  return [process.execPath, fileURLToPath(new URL("./child.js", import.meta.url))];
}

export interface SetElemWriterOptions {
  /**
   * Write through the agent's own nfnetlink socket in the namespace (socket.ts: no process, no
   * wake-ups) when the addon is built and the socket opens; else through the writer process.
   */
  readonly inProcess?: boolean;
}

export class SetElemWriter {
  private child: ChildProcess | undefined;
  private nextId = 1;
  /** The current writer's waiters (each writer its own: an old writer's exit fails only its requests). */
  private waiters = new Map<number, (r: ChildAnswer) => void>();
  private stopped = false;
  /** The in-process socket (options.inProcess), until it cannot be opened. */
  private sock: NfnlSocket | undefined;

  constructor(
    private readonly netns: string | undefined,
    private readonly timeoutMs = 10_000,
    opts: SetElemWriterOptions = {},
  ) {
    if (opts.inProcess === true && nfnlSocketAvailable()) this.sock = new NfnlSocket(netns);
  }

  /** "socket": the agent's own nfnetlink socket; "process": the writer process. */
  get via(): "socket" | "process" {
    return this.sock ? "socket" : "process";
  }

  private spawnChild(): ChildProcess {
    // nsenter (inNetns): the network namespace only; `ip netns exec` also copies the mount namespace.
    const argv = [...inNetns(this.netns), ...writerCommand()];
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    c.stdin?.on("error", () => undefined);
    c.stderr?.resume();
    const waiters = new Map<number, (r: ChildAnswer) => void>();
    this.waiters = waiters;
    // The writer never keeps the agent (or a test) alive: it exits when its stdin closes.
    c.unref();
    for (const s of [c.stdin, c.stdout, c.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
    routeAnswers(c.stdout as NodeJS.ReadableStream, waiters);
    c.on("exit", () => {
      if (this.child === c) this.child = undefined;
      for (const [id, w] of waiters) {
        waiters.delete(id);
        w({ ok: false, error: "the set-element writer exited" });
      }
    });
    return c;
  }

  /**
   * Starts the writer process now (the Reconciler does after its first apply), so that the
   * first change does not wait for a Node process to boot (0.3-4 s on a loaded 2-core machine).
   */
  warm(): void {
    if (this.sock?.open()) return;
    this.sock = undefined;
    if (!this.stopped) this.child ??= this.spawnChild();
  }

  /** Applies every deletion and addition of `ops` to `table` (family inet) in one atomic batch. */
  async apply(table: string, ops: readonly ElementOps[]): Promise<void> {
    await this.send(() => setElemBatch(table, ops, 0).bytes);
  }

  /** Sends `msgs` (nfnl/objects.ts: chains, maps, rules, elements) as one atomic batch, in order. */
  async applyMessages(msgs: readonly NfMsg[]): Promise<void> {
    await this.send(() => frameBatch(msgs, 0).bytes);
  }

  private async send(encode: () => Buffer): Promise<void> {
    if (this.stopped) throw fail("stopping");
    let batch: Buffer;
    try {
      // Numbered from 0 here; the writer process renumbers it in its own sequence.
      batch = encode();
    } catch (e) {
      throw fail((e as Error).message);
    }
    if (this.sock && !this.sock.open()) this.sock = undefined; // cannot open here: the process writes
    if (this.sock) return this.sock.send(batch);
    const req = { id: this.nextId };
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    // The frame child.ts reads: length of what follows, id, the batch.
    const head = Buffer.alloc(8);
    head.writeUInt32LE(4 + batch.length, 0);
    head.writeUInt32LE(req.id, 4);
    this.child ??= this.spawnChild();
    const c = this.child;
    const waiters = this.waiters; // c's
    const r = await new Promise<{ ok: boolean; error?: string; errno?: number }>((resolve) => {
      const timer = setTimeout(() => {
        waiters.delete(req.id);
        c.kill("SIGKILL");
        resolve({ ok: false, error: `no answer within ${this.timeoutMs} ms` });
      }, this.timeoutMs);
      waiters.set(req.id, (x) => {
        clearTimeout(timer);
        resolve(x);
      });
      // One writev for the frame: each write to the pipe wakes the writer process, which on a
      // busy machine takes the CPU from the event loop there and then (2 writes: 2 wake-ups).
      const s = c.stdin;
      s?.cork();
      s?.write(head);
      s?.write(batch);
      s?.uncork();
    });
    if (!r.ok) {
      throw fail(r.errno !== undefined ? (ERRNO[r.errno] ?? `errno ${r.errno}`) : (r.error ?? "refused"));
    }
  }

  stop(): void {
    this.stopped = true;
    this.sock?.close();
    this.child?.stdin?.end();
    this.child?.kill("SIGTERM");
    this.child = undefined;
  }
}

function fail(why: string): MembraneError {
  return new MembraneError("NFT_APPLY_FAILED", `Cannot apply the change through nfnetlink: ${why}`, {
    hint: "The agent plans the change against the kernel with nft instead; if that fails too, check `nft list table` in the node namespace.",
  });
}
