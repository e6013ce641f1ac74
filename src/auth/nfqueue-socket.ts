/**
 * The NFQUEUE of first packets read by the agent itself: a NETLINK_NETFILTER socket made in the
 * node's namespace (the main thread enters it for the socket's creation only:
 * datapath/nfnl/socket.ts inNodeNetns) and polled by the agent's event loop.
 *
 *   kernel queue --datagram--> agent (parseQueue) --onPacket--> ... verdict --sendmsg--> kernel
 *
 * Why: with the reader process (nfqueue-child.ts) a held packet cost three wake-ups (the reader,
 * then the agent, then the reader again for the verdict), each a wait for a CPU on a loaded 2-core
 * node: the tail of the one-node first connection. Here it costs one, the agent's.
 * The same contract as the process: bound without fail-open (a full queue, or no reader, drops),
 * the socket closed = the queue unbound = the kernel drops what it would queue.
 */
import { RawNetlinkSocket, type ErrnoException } from "netlink";
import { configRequests, parseQueue, type QueuedPacket } from "../abi/nfqueue-wire.js";
import { inNodeNetns } from "../datapath/nfnl/socket.js";

const NETLINK_NETFILTER = 12;

export interface NfqueueSocketParams {
  readonly queue: number;
  readonly netns: string | undefined;
  readonly copyRange: number;
  readonly maxLen: number;
  readonly onPacket: (p: QueuedPacket) => void;
  /** Malformed datagrams (counted). */
  readonly onInvalid: (n: number) => void;
  /** The kernel dropped datagrams for us (ENOBUFS): counted, not fatal. */
  readonly onOverflow: () => void;
  /** After start: the socket failed. */
  readonly onError: (why: string) => void;
}

export class NfqueueSocket {
  private sock: RawNetlinkSocket | undefined;

  constructor(private readonly p: NfqueueSocketParams) {}

  /** Makes the socket in the namespace and binds the queue; rejects with why not (the caller falls back). */
  start(): Promise<void> {
    const sock = inNodeNetns(this.p.netns, () => new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 18 })); // prettier-ignore
    this.sock = sock;
    const reqs = configRequests(this.p.queue, 1, { copyRange: this.p.copyRange, maxLen: this.p.maxLen });
    return new Promise<void>((resolve, reject) => {
      let acked = 0;
      let ready = false;
      const fail = (why: string): void => {
        if (ready) this.p.onError(why);
        else {
          this.close();
          reject(new Error(why));
        }
      };
      sock.on("message", (msg: Buffer) => {
        const q = parseQueue(msg);
        if (!ready) {
          for (const a of q.acks) {
            if (a.errno !== 0)
              return fail(a.errno === 16 || a.errno === 1 ? `queue ${this.p.queue} is bound by another process` : `config request ${a.seq} failed with errno ${a.errno}`); // prettier-ignore
            if (++acked === reqs.length) {
              ready = true;
              resolve();
            }
          }
        }
        if (q.invalid > 0) this.p.onInvalid(q.invalid);
        for (const pkt of q.packets) this.p.onPacket(pkt);
      });
      sock.on("error", (err: ErrnoException) => {
        if (err.code === "ENOBUFS") this.p.onOverflow();
        else fail(`the queue socket failed: ${err.message}`);
      });
      const sendAll = (i: number): void => {
        const r = reqs[i];
        if (!r) return;
        sock.send(r, {}, (err) => (err ? fail(`sending config request ${i + 1} failed: ${err.message}`) : sendAll(i + 1))); // prettier-ignore
      };
      sendAll(0);
    });
  }

  /** Sends one verdict message (abi/nfqueue-wire.ts verdictMessage). */
  send(msg: Buffer): void {
    this.sock?.send(msg, {}, (err) => err && this.p.onError(`sending a verdict failed: ${err.message}`));
  }

  close(): void {
    const s = this.sock;
    this.sock = undefined;
    try {
      s?.close();
    } catch {
      // already closed
    }
  }
}
