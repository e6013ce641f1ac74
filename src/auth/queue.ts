/**
 * The agent's side of the NFQUEUE of first packets waiting for a handshake: reads the queue with
 * its own socket in the node's namespace (nfqueue-socket.ts: one wake-up per held packet) when
 * the addon is built, else starts the reader process there (nfqueue-child.ts); hands each queued
 * packet to `onPacket`, and sends verdicts back. `MEMBRANE_AUTH_QUEUE=process` forces the process.
 *
 *   kernel queue AUTH_QUEUE_NUM --child--> frames (receive time + datagram) --parseQueue--> onPacket(p, lag)
 *   verdict(p, accept, mark) --child stdin--> kernel (NF_ACCEPT with the mark | NF_DROP)
 *
 * The queue is bounded (maxLen) and binds without fail-open: a full queue, or no reader,
 * drops. Stopping the reader is therefore closing the door, never opening it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import { FrameDecoder, FRAME_DATAGRAM, FRAME_STATUS } from "../observe/frames.js";
import { NF_ACCEPT, NF_DROP, parseQueue, verdictMessage, type QueuedPacket } from "../abi/nfqueue-wire.js";
import { NfqueueSocket } from "./nfqueue-socket.js";

export interface AuthQueueParams {
  readonly queue: number;
  /** The node's namespace; undefined = the agent's own. */
  readonly netns?: string;
  readonly maxLen?: number;
  /** `lagMs`: from the reader receiving the packet to the agent reading it. */
  readonly onPacket: (p: QueuedPacket, lagMs: number) => void;
  readonly onError: (e: Error) => void;
}

const failed = (why: string, cause?: unknown): MembraneError =>
  new MembraneError("AUTH_SETUP_FAILED", `Cannot read the authentication queue: ${why}`, {
    hint: "Reading NFQUEUE needs root (CAP_NET_ADMIN) and a queue no other process has bound.",
    ...(cause !== undefined ? { cause } : {}),
  });

export class AuthQueue {
  private child: ChildProcessWithoutNullStreams | undefined;
  private stopping = false;
  private seq = 100;
  /** Queued packets seen, verdicts sent, malformed datagrams. */
  readonly stats = { packets: 0, verdicts: 0, invalid: 0, overflows: 0 };

  /** The agent's own queue socket (nfqueue-socket.ts), when it reads the queue. */
  private sock: NfqueueSocket | undefined;
  /** Who reads the queue: the agent's own socket, or the reader process; why not the socket. */
  via: "socket" | "process" = "process";
  whyProcess = "";

  constructor(private readonly p: AuthQueueParams) {}

  /** Binds the queue: with the agent's own socket unless `prefer` is "process" or it cannot. */
  async start(
    prefer: "socket" | "process" = process.env["MEMBRANE_AUTH_QUEUE"] === "process" ? "process" : "socket",
  ): Promise<void> {
    this.stopping = false;
    if (prefer === "socket") {
      const cfg = { queue: this.p.queue, netns: this.p.netns, copyRange: 128, maxLen: this.p.maxLen ?? 256 };
      const s = new NfqueueSocket({
        ...cfg,
        onPacket: (pkt) => {
          this.stats.packets++;
          this.p.onPacket(pkt, 0);
        },
        onInvalid: (n) => (this.stats.invalid += n),
        onOverflow: () => this.stats.overflows++,
        onError: (why) => !this.stopping && this.p.onError(failed(why)),
      });
      try {
        await s.start();
        this.sock = s;
        this.via = "socket";
        return;
      } catch (e) {
        s.close();
        this.whyProcess = (e as Error).message;
      }
    } else this.whyProcess = "asked for";
    this.via = "process";
    return this.startChild();
  }

  /** Rebinds the queue with the other reader (bench/auth.ts compares them; packets queued meanwhile drop). */
  async restart(prefer: "socket" | "process"): Promise<void> {
    await this.stop();
    await this.start(prefer);
  }

  private startChild(): Promise<void> {
    const script = fileURLToPath(new URL("./nfqueue-child.js", import.meta.url));
    const cfg = JSON.stringify({ queue: this.p.queue, copyRange: 128, maxLen: this.p.maxLen ?? 256 });
    const argv =
      this.p.netns === undefined
        ? [process.execPath, script, cfg]
        : ["ip", "netns", "exec", this.p.netns, process.execPath, script, cfg];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const decoder = new FrameDecoder();
    return new Promise((resolve, reject) => {
      let started = false;
      const fail = (e: Error): void => {
        if (!started) reject(e);
        else if (!this.stopping) this.p.onError(e);
      };
      child.on("error", (e) => fail(failed("the reader did not start", e)));
      child.on("exit", (code, signal) => {
        if (!this.stopping) fail(failed(`the reader exited (${signal ?? `code ${code}`}) ${stderr.trim()}`));
      });
      child.stdin.on("error", () => undefined); // the exit handler reports it
      child.stdout.on("data", (chunk: Buffer) => {
        let frames;
        try {
          frames = decoder.push(chunk);
        } catch (e) {
          fail(failed("the reader's output is corrupt", e));
          void this.stop();
          return;
        }
        for (const f of frames) {
          if (f.kind === FRAME_DATAGRAM && f.body.length >= 8) {
            // The reader's receive time (ms since epoch), then the datagram.
            const lagMs = performance.timeOrigin + performance.now() - f.body.readDoubleLE(0);
            const q = parseQueue(f.body.subarray(8));
            this.stats.invalid += q.invalid;
            for (const pkt of q.packets) {
              this.stats.packets++;
              this.p.onPacket(pkt, lagMs);
            }
          } else if (f.kind === FRAME_STATUS) {
            const s = JSON.parse(f.body.toString()) as { ready?: boolean; error?: string; overflow?: string };
            if (s.ready && !started) {
              started = true;
              resolve();
            } else if (s.error !== undefined) fail(failed(s.error));
            else if (s.overflow !== undefined) this.stats.overflows++;
          }
        }
      });
    });
  }

  /** Releases the packet (with `mark` on it) or drops it. */
  verdict(pkt: QueuedPacket, accept: boolean, mark?: number): void {
    if (this.stopping) return; // the kernel drops what no reader answers once we are gone
    const msg = verdictMessage(pkt.queue, this.seq++, pkt.id, accept ? NF_ACCEPT : NF_DROP, mark);
    if (this.sock) {
      this.sock.send(msg);
      this.stats.verdicts++;
      return;
    }
    const c = this.child;
    if (!c) return;
    const h = Buffer.alloc(4);
    h.writeUInt32LE(msg.length, 0);
    c.stdin.write(Buffer.concat([h, msg]));
    this.stats.verdicts++;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.sock?.close();
    this.sock = undefined;
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.stdin.end();
      setTimeout(() => c.kill("SIGKILL"), 2000).unref();
    });
  }
}
