/**
 * The agent's own nfnetlink socket in a node namespace (native/membrane-nfnl-sock.c, built into
 * dist/bin/membrane-nfnl-sock.node): one nf_tables batch written and answered in one call, with
 * no process between the agent and the kernel.
 *
 *   NfnlSocket.send(batch) --renumber (abi/nft-setelem-wire.ts: set, chain and rule changes only)-->
 *     addon.batch(fd, bytes)  (the kernel runs the batch inside sendmsg and queues its answers)
 *     <-- the datagrams queued --> checkAnswers: every message acknowledged, none with an error
 *
 * Why: the writer process (setelem.ts, membrane-nfnl) costs two wake-ups per change, the writer's
 * and then the agent's; on a loaded 2-core machine each is a wait for a CPU (a 2-element change
 * measured 57.8 ms end to end at load 19, of which Node 1.3 ms). Here the change costs what the
 * kernel does.
 *
 * Fail closed: a refused batch, an answer missing or unreadable, a socket error is an error; the
 * caller (LbTable) then forgets what the kernel holds and writes its table whole with nft. The
 * kernel applies a batch whole or not at all, so an error never leaves half a change.
 * The socket is opened lazily (nothing at import time) and closed by close().
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import { parseAcks, renumberBatch } from "../../abi/nft-setelem-wire.js";
import { netnsPath } from "../rtnl.js";

interface Addon {
  open(netnsPath: string | null): number;
  batch(fd: number, bytes: Buffer): Buffer[];
  close(fd: number): void;
  inNetns(netnsPath: string, fn: () => unknown): unknown;
}

/** dist/bin/membrane-nfnl-sock.node (scripts/build-native.mjs). */
const ADDON = fileURLToPath(new URL("../../../bin/membrane-nfnl-sock.node", import.meta.url));

let loaded: Addon | null | undefined;

/** The addon, or null when it was not built (no gcc or no Node headers at build time). */
function addon(): Addon | null {
  if (loaded === undefined) {
    try {
      loaded = existsSync(ADDON) ? (createRequire(import.meta.url)(ADDON) as Addon) : null;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** True when the in-process socket can be used (the addon is built); `MEMBRANE_NFNL_WRITER=process` says no. */
export function nfnlSocketAvailable(): boolean {
  return process.env["MEMBRANE_NFNL_WRITER"] !== "process" && addon() !== null;
}

/**
 * Runs `fn` with the agent's main thread in the node namespace `netns` (the agent's own when
 * undefined); the addon puts the thread back before returning, even when `fn` throws. A socket
 * `fn` makes belongs to that namespace and is polled by the agent's event loop (the NFQUEUE
 * reader, auth/nfqueue-socket.ts). Throws when the addon is not built or the namespace cannot be
 * entered (the caller then uses a process in the namespace).
 */
export function inNodeNetns<T>(netns: string | undefined, fn: () => T): T {
  if (netns === undefined) return fn();
  const a = addon();
  if (!a || process.env["MEMBRANE_NFNL_WRITER"] === "process")
    throw fail("the addon dist/bin/membrane-nfnl-sock.node is not built");
  return a.inNetns(netnsPath(netns), fn) as T;
}

const ERRNO: Record<number, string> = {
  1: "EPERM (no CAP_NET_ADMIN in the node namespace)",
  2: "ENOENT (a table, chain, map or element is missing)",
  16: "EBUSY (a chain or map is still referenced)",
  17: "EEXIST (an element exists with another value)",
  22: "EINVAL",
};

/**
 * The outcome of one batch from the datagrams the kernel queued: "ok" when every message in
 * `seqs` was acknowledged without error; else why not. Answers outside [first, last] are not this
 * batch's and are ignored; an error on the batch's own header (first - 1 .. last + 1) fails it.
 * Pure, and never throws on hostile bytes (parseAcks stops at the first malformed message).
 */
export function checkAnswers(
  datagrams: readonly Uint8Array[],
  seqs: readonly number[],
): { ok: true } | { ok: false; errno?: number; why: string } {
  const waiting = new Set(seqs);
  const first = Math.min(...seqs) - 1;
  const last = Math.max(...seqs) + 1;
  for (const d of datagrams) {
    for (const [seq, errno] of parseAcks(d)) {
      if (seq < first || seq > last) continue;
      if (errno !== 0) return { ok: false, errno, why: ERRNO[errno] ?? `errno ${errno}` };
      waiting.delete(seq);
    }
  }
  if (waiting.size > 0)
    return { ok: false, why: `${waiting.size} of ${seqs.length} messages not acknowledged` };
  return { ok: true };
}

export class NfnlSocket {
  private fd: number | undefined;
  private seq = 1;
  private closed = false;

  /** `netns`: the node's named namespace (the agent's own when absent). */
  constructor(private readonly netns: string | undefined) {}

  /**
   * Opens the socket when it is not open; false when it cannot be (no addon, no namespace, no
   * CAP_NET_ADMIN or CAP_SYS_ADMIN for setns): the caller uses the writer process instead.
   */
  open(): boolean {
    const a = addon();
    if (!a || this.closed) return false;
    try {
      this.fd ??= a.open(this.netns === undefined ? null : netnsPath(this.netns));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends one batch (nfnl/objects.ts frameBatch or setElemBatch bytes; renumbered here, in place)
   * and returns once the kernel applied it; throws NFT_APPLY_FAILED otherwise.
   */
  send(batch: Buffer): void {
    const a = addon();
    if (!a) throw fail("the addon dist/bin/membrane-nfnl-sock.node is not built");
    if (this.closed) throw fail("the socket is closed");
    let seqs: number[];
    try {
      seqs = renumberBatch(batch, this.seq);
    } catch (e) {
      throw fail((e as Error).message);
    }
    this.seq = (this.seq + seqs.length + 2) % 0x7fff0000 || 1;
    if (seqs.length === 0) return;
    let answers: Buffer[];
    try {
      this.fd ??= a.open(this.netns === undefined ? null : netnsPath(this.netns));
      answers = a.batch(this.fd, batch);
    } catch (e) {
      // A socket error: a fresh socket next time (the kernel's answer to this one is unknown).
      this.close(false);
      throw fail((e as Error).message);
    }
    const r = checkAnswers(answers, seqs);
    if (!r.ok) throw fail(r.why);
  }

  /** Closes the socket; `forever` (the default): no batch after this. */
  close(forever = true): void {
    if (forever) this.closed = true;
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) addon()?.close(fd);
  }
}

function fail(why: string): MembraneError {
  return new MembraneError("NFT_APPLY_FAILED", `Cannot apply the change through nfnetlink: ${why}`, {
    hint: "The agent writes the table whole with nft instead; if that fails too, check `nft list table` in the node namespace.",
  });
}
