/**
 * NFLOG reader: the kernel's drop logs (`log group N prefix "mbr:d:..."`) as events.
 *
 *   kernel (netns NS) --netlink--> nflog-child.js (ip netns exec NS) --frames on stdout-->
 *     NflogReader (parses netlink, counts seq gaps) --onEvent(NflogEvent)
 *
 * NFLOG is per network namespace and Node cannot enter one per thread, so the
 * socket lives in a child process started inside the namespace (or in ours
 * when no `netns` is given). Losses are counted from gaps in the kernel's
 * per-group sequence numbers (NFULA_SEQ): when the reader falls behind, the
 * kernel drops events (ENOBUFS) and the next event's seq says how many.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import { FRAME_DATAGRAM, FRAME_STATUS, FrameDecoder } from "./frames.js";
import { parseNetlink, type NflogConfig, type NflogEvent } from "./nflog-msg.js";

export type { NflogEvent } from "./nflog-msg.js";

export interface NflogReaderParams extends NflogConfig {
  /** Network namespace (`ip netns` name) to read in; absent = the current one. */
  netns?: string;
  /** NFLOG group (0-65535): the `log group N` of the rules. */
  group: number;
  /** Called for every event, in kernel order. */
  onEvent: (e: NflogEvent) => void;
  /** Called when the kernel reports lost events (seq gaps). */
  onLost?: (n: number) => void;
  /** Called when the reader dies after it started. */
  onError?: (e: MembraneError) => void;
  /** SO_RCVBUF of the netlink socket. Default 8 MiB (capped by net.core.rmem_max). */
  recvBufferBytes?: number;
}

export interface NflogStats {
  events: number;
  /** Events the kernel could not deliver (from sequence gaps). */
  lost: number;
  /** Socket overflow reports (ENOBUFS) from the child. */
  overflows: number;
  /** Malformed netlink messages skipped. */
  invalid: number;
}

function failed(why: string, hint: string, cause?: unknown): MembraneError {
  return new MembraneError("NFLOG_FAILED", `Cannot read NFLOG events: ${why}`, {
    hint,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Reads one NFLOG group in one network namespace. */
export class NflogReader {
  private readonly p: NflogReaderParams;
  private child: ChildProcessWithoutNullStreams | undefined;
  private nextSeq: number | undefined;
  private stopping = false;
  private readonly st: NflogStats = { events: 0, lost: 0, overflows: 0, invalid: 0 };

  constructor(params: NflogReaderParams) {
    if (!Number.isInteger(params.group) || params.group < 0 || params.group > 65535)
      throw failed(
        `group ${params.group} is not in 0..65535`,
        "Use the logGroup the datapath compiles with.",
      );
    this.p = params;
  }

  stats(): NflogStats {
    return { ...this.st };
  }

  /** Starts the child and resolves once the kernel acknowledged the bind. */
  start(): Promise<void> {
    const script = fileURLToPath(new URL("./nflog-child.js", import.meta.url));
    const cfg = JSON.stringify({
      group: this.p.group,
      copyRange: this.p.copyRange,
      qthreshold: this.p.qthreshold,
      flushTimeoutMs: this.p.flushTimeoutMs,
      nlbufsiz: this.p.nlbufsiz,
      recvBufferBytes: this.p.recvBufferBytes,
    });
    const argv =
      this.p.netns === undefined
        ? [process.execPath, script, cfg]
        : ["ip", "netns", "exec", this.p.netns, process.execPath, script, cfg];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    const where = this.p.netns === undefined ? "the current namespace" : `netns ${this.p.netns}`;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const decoder = new FrameDecoder();
    return new Promise((resolve, reject) => {
      let started = false;
      const fail = (e: MembraneError): void => {
        if (!started) reject(e);
        else if (!this.stopping) this.p.onError?.(e);
      };
      child.on("error", (e) =>
        fail(failed(`could not start the reader in ${where}`, "Is `ip` installed?", e)),
      );
      child.on("exit", (code, signal) => {
        if (this.stopping) return;
        fail(
          failed(
            `the reader in ${where} exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ""}`,
            "Reading NFLOG needs root (CAP_NET_ADMIN) and a group no other process has bound.",
          ),
        );
      });
      child.stdout.on("data", (chunk: Buffer) => {
        let frames;
        try {
          frames = decoder.push(chunk);
        } catch (e) {
          fail(failed(`the reader's output is corrupt`, "This is a bug; restart the agent.", e));
          void this.stop();
          return;
        }
        for (const f of frames) {
          if (f.kind === FRAME_DATAGRAM) this.datagram(f.body);
          else if (f.kind === FRAME_STATUS) {
            const s = JSON.parse(f.body.toString()) as { ready?: boolean; error?: string; overflow?: string };
            if (s.ready && !started) {
              started = true;
              resolve();
            } else if (s.error !== undefined) {
              fail(
                failed(
                  `binding group ${this.p.group} in ${where}: ${s.error}`,
                  "Is another reader bound to it?",
                ),
              );
            } else if (s.overflow !== undefined) this.st.overflows++;
          }
        }
      });
    });
  }

  private datagram(body: Buffer): void {
    if (body.length < 8) return;
    const parsed = parseNetlink(body.subarray(8), body.readDoubleLE(0));
    this.st.invalid += parsed.invalid;
    for (const e of parsed.events) {
      if (e.seq !== undefined) {
        if (this.nextSeq !== undefined && e.seq !== this.nextSeq) {
          const gap = (e.seq - this.nextSeq) >>> 0;
          // A huge gap is a reordering or restart, not a loss worth reporting as billions.
          if (gap < 0x80000000) {
            this.st.lost += gap;
            this.p.onLost?.(gap);
          }
        }
        this.nextSeq = (e.seq + 1) >>> 0;
      }
      this.st.events++;
      this.p.onEvent(e);
    }
  }

  /** Stops the child; idempotent. */
  async stop(): Promise<void> {
    const c = this.child;
    if (c === undefined || this.stopping) return;
    this.stopping = true;
    if (c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
    });
  }
}

/**
 * Reads NFLOG group `group` inside network namespace `netns`; resolves once
 * the group is bound. Call stop() on the result to end it. (The shape the
 * datapath tests use; NflogReader is the full interface.)
 */
export async function readNflogInNetns(
  netns: string,
  group: number,
  onEvent: (e: NflogEvent) => void,
): Promise<{ stop: () => void; reader: NflogReader }> {
  const reader = new NflogReader({ netns, group, onEvent, qthreshold: 1 });
  await reader.start();
  return { stop: () => void reader.stop(), reader };
}
