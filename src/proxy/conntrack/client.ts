/**
 * The original destination of a redirected connection, asked of conntrack.
 *
 * The node's nftables send L7 traffic to the proxy with `dnat ip to
 * 10.200.0.1:15001` in a nat prerouting chain, so the socket the proxy accepts
 * says only "10.200.0.1:15001". The address the client dialled lives in the
 * conntrack entry. C proxies read it with getsockopt(SO_ORIGINAL_DST), or use
 * TPROXY and read the socket's local address; Node exposes neither
 * SO_ORIGINAL_DST nor IP_TRANSPARENT (which a TPROXY listener needs). So we
 * ask the kernel over ctnetlink instead: one IPCTNL_MSG_CT_GET keyed by the
 * entry's REPLY tuple (proxy addr:port -> client addr:port), whose answer
 * carries the ORIGINAL tuple (client -> dialled addr:port) and the ct mark.
 *
 *   accepted socket (local, remote)
 *        |  originalDst("tcp", local, remote)
 *        v
 *   ConntrackClient --CT_GET(seq)--> kernel ctnetlink (this network namespace)
 *        ^                                |
 *        +------- CT_NEW(seq) | ENOENT <--+      one round trip, no child process
 *
 * One netlink socket serves any number of concurrent lookups, matched by the
 * netlink sequence number; at most `maxInFlight` are on the wire at once (the
 * kernel drops replies that overflow our receive buffer) and each gives up
 * after `timeoutMs` (one timer for all: deadlines.ts). The socket lives in the
 * namespace of the process that opened it; ctnetlink needs CAP_NET_ADMIN there.
 *
 * The lookups of one turn (the conntrack broker's: one message from the proxy
 * with the datagrams of one recvmmsg) leave in one sendmsg, their GET requests
 * side by side (at most MAX_SEND_BATCH). The kernel runs each in turn
 * (nfnetlink_rcv -> netlink_rcv_skb) and answers each on its own, matched by
 * seq as before: one syscall and one completion callback per batch, not per
 * lookup. One thing is per batch in the kernel: the CAP_NET_ADMIN check, whose
 * EPERM answers only the first message, so an EPERM fails the whole batch.
 */
import { constants as osConstants } from "node:os";
import { RawNetlinkSocket, type ErrnoException, type MessageInfo } from "netlink";
import { MembraneError } from "../../errors.js";
import { addressBytes } from "../../abi/ctnetlink-address.js";
import { TimeoutQueue, type Deadline } from "../deadlines.js";
import { buildGetRequest, IPPROTO_TCP, IPPROTO_UDP, NETLINK_NETFILTER, parseReplies } from "./message.js";

export interface ConntrackClientOptions {
  /** Longest a lookup waits for its answer, queueing included, in ms. Default 1000. */
  timeoutMs?: number;
  /** Requests on the wire at once; more wait in a queue. Default 64. */
  maxInFlight?: number;
  /** SO_RCVBUF in bytes (the kernel caps it at net.core.rmem_max). Default 1 MiB. */
  recvBufferBytes?: number;
}

export interface SocketAddress {
  address: string;
  port: number;
}

/** Where the client meant to go, and the conntrack mark and id when the kernel sent them. */
export interface OriginalDst {
  address: string;
  port: number;
  mark?: number;
  /** The entry's id (CTA_ID, nft's `ct id`): the proxy's DNS cache ties datagrams to it. */
  ctId?: number;
}

/** Room for one answer from the kernel (see open). */
const ANSWER_BUFFER_BYTES = 8192;

/** The most GET requests one sendmsg carries (an iovec each; the kernel allows 1024). */
export const MAX_SEND_BATCH = 256;

interface Lookup {
  readonly seq: number;
  readonly proto: number;
  readonly message: Buffer;
  /** What was asked, for an error's message: built only when one is thrown. */
  readonly ask: readonly [proto: "tcp" | "udp", local: SocketAddress, remote: SocketAddress];
  readonly resolve: (v: OriginalDst | undefined) => void;
  readonly reject: (e: MembraneError) => void;
  deadline: Deadline | undefined;
  /** The lookups that went out in the same sendmsg as this one (itself included); undefined: still queued. */
  batch: Lookup[] | undefined;
}

const what = (proto: string, local: SocketAddress, remote: SocketAddress): string =>
  `the original destination of ${proto} ${hostPort(remote)} -> ${hostPort(local)}`;

const ENOENT = 2;
const EPERM = 1;
const HINT_PERM = "ctnetlink needs CAP_NET_ADMIN in the network namespace: run the agent as root";

function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(osConstants.errno)) if (n === errno) return name;
  return `errno ${errno}`;
}

const hostPort = (a: SocketAddress): string =>
  a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;

/** What is wrong with the caller's addresses, in the caller's words (local/remote). */
function argumentProblem(local: SocketAddress, remote: SocketAddress): string | undefined {
  const families: number[] = [];
  for (const [side, a] of [
    ["local", local],
    ["remote", remote],
  ] as const) {
    const b = addressBytes(a.address);
    if (!b) return `the ${side} address ${JSON.stringify(a.address)} is not an IP address`;
    if (!Number.isInteger(a.port) || a.port < 0 || a.port > 0xffff)
      return `the ${side} port ${a.port} is not 0-65535`;
    families.push(b.family);
  }
  if (families[0] !== families[1])
    return `the local address ${local.address} and the remote address ${remote.address} are of different IP families`;
  return undefined;
}

export class ConntrackClient {
  /** Requests sent, the sendmsg calls that carried them, the most one carried (tests, diagnostics). */
  readonly stats = { requests: 0, sendmsgs: 0, largestBatch: 0 };
  private readonly sock: RawNetlinkSocket;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly pending = new Map<number, Lookup>();
  private readonly queue: Lookup[] = [];
  private readonly deadlines: TimeoutQueue;
  private inFlight = 0;
  private flushQueued = false;
  private seq: number;
  /** Set when the socket is gone: why every later lookup fails. */
  private dead: string | undefined;

  private constructor(p: { sock: RawNetlinkSocket; timeoutMs: number; maxInFlight: number }) {
    this.sock = p.sock;
    this.timeoutMs = p.timeoutMs;
    this.maxInFlight = p.maxInFlight;
    this.deadlines = new TimeoutQueue(p.timeoutMs);
    this.seq = (Math.random() * 0xffffffff) >>> 0;
    this.sock.on("message", (msg, info) => this.onMessage(msg, info));
    this.sock.on("truncatedMessage", (msg, info) => this.onMessage(msg, info));
    this.sock.on("error", (err) => this.onError(err));
  }

  /**
   * Opens a ctnetlink socket in the current network namespace and checks with
   * one lookup that the kernel answers it (so a missing CAP_NET_ADMIN shows
   * here, not on the first connection).
   */
  static async open(opts: ConntrackClientOptions = {}): Promise<ConntrackClient> {
    let sock: RawNetlinkSocket;
    try {
      sock = new RawNetlinkSocket(NETLINK_NETFILTER, {
        recvBufferSize: opts.recvBufferBytes ?? 1 << 20,
        sendBufferSize: 1 << 18,
        // One recvmsg per answer instead of a peek for its size and then the read. A GET's answer
        // is built in an skb of NLMSG_DEFAULT_SIZE (under a page: ctnetlink_get_conntrack), so it
        // always fits; one that did not would come truncated and fail its lookup (parseReplies).
        messagePeeking: false,
        msgBufferSize: ANSWER_BUFFER_BYTES,
      });
    } catch (e) {
      throw new MembraneError("CONNTRACK_FAILED", `Cannot open a ctnetlink socket: ${(e as Error).message}`, {
        cause: e,
        hint: "Membrane needs a Linux kernel with nf_conntrack_netlink and the netlink npm package's prebuilt binding",
      });
    }
    // The socket alone never keeps the process alive; pending lookups do (it is ref'd while any are).
    sock.unref();
    const client = new ConntrackClient({
      sock,
      timeoutMs: opts.timeoutMs ?? 1000,
      maxInFlight: Math.max(1, opts.maxInFlight ?? 64),
    });
    try {
      await client.originalDst("tcp", { address: "0.0.0.0", port: 0 }, { address: "0.0.0.0", port: 0 });
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  /**
   * The destination the peer `remote` originally dialled, for a connection
   * (or UDP flow) that arrived at our `local` address through DNAT. Undefined
   * when conntrack has no such entry (not redirected, or already gone).
   */
  originalDst(
    proto: "tcp" | "udp",
    local: SocketAddress,
    remote: SocketAddress,
  ): Promise<OriginalDst | undefined> {
    if (this.dead !== undefined)
      return Promise.reject(
        new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what(proto, local, remote)}: ${this.dead}`, {
          hint: "open a new ConntrackClient",
        }),
      );
    const bad = argumentProblem(local, remote);
    if (bad !== undefined)
      return Promise.reject(
        new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what(proto, local, remote)}: ${bad}`),
      );
    const seq = this.nextSeq();
    const protoNum = proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
    const req = buildGetRequest(seq, {
      proto: protoNum,
      src: local.address,
      srcPort: local.port,
      dst: remote.address,
      dstPort: remote.port,
    });
    if (!req.ok)
      return Promise.reject(
        new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what(proto, local, remote)}: ${req.reason}`),
      );
    return new Promise((resolve, reject) => {
      const l: Lookup = {
        seq,
        proto: protoNum,
        message: req.message,
        ask: [proto, local, remote],
        resolve,
        reject,
        deadline: undefined,
        batch: undefined,
      };
      l.deadline = this.deadlines.add(() =>
        this.fail(l, `the kernel did not answer within ${this.timeoutMs} ms`),
      );
      if (this.pending.size === 0) this.sock.ref();
      this.pending.set(seq, l);
      this.queue.push(l);
      this.flushSoon();
    });
  }

  /** Closes the socket; lookups still pending reject. Idempotent. */
  close(): void {
    if (this.dead === undefined) this.die("the client was closed");
  }

  private nextSeq(): number {
    do this.seq = (this.seq + 1) >>> 0;
    while (this.seq === 0 || this.pending.has(this.seq));
    return this.seq;
  }

  /**
   * Sends the queued lookups together (see the top): new ones at the end of this task (a
   * microtask), those waiting for room once this turn's answers have made it (setImmediate: the
   * answers come one callback each, with microtasks run after each; a microtask would send one
   * request per answer).
   */
  private flushSoon(refill = false): void {
    if (this.flushQueued || this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    this.flushQueued = true;
    if (refill) setImmediate(this.flush);
    else queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    if (this.dead !== undefined) return;
    const room = Math.min(this.maxInFlight - this.inFlight, MAX_SEND_BATCH);
    const batch: Lookup[] = [];
    while (batch.length < room) {
      const l = this.queue.shift();
      if (!l) break;
      if (this.pending.get(l.seq) === l) batch.push(l); // else timed out while queued
    }
    if (batch.length === 0) return;
    for (const l of batch) l.batch = batch;
    this.inFlight += batch.length;
    this.stats.requests += batch.length;
    this.stats.sendmsgs++;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    this.sock.send(
      batch.map((l) => l.message),
      {},
      (err?: ErrnoException) => {
        if (err) for (const l of batch) this.fail(l, `sending the request failed: ${err.message}`, err);
      },
    );
    this.flushSoon(); // more than MAX_SEND_BATCH waited and there is room: the next batch now
  };

  /** Removes `l` from the books and lets queued lookups onto the wire. */
  private settle(l: Lookup): boolean {
    if (this.pending.get(l.seq) !== l) return false;
    this.pending.delete(l.seq);
    if (this.pending.size === 0) this.sock.unref();
    l.deadline?.cancel();
    if (l.batch) this.inFlight--;
    if (this.dead === undefined) this.flushSoon(true);
    return true;
  }

  private fail(l: Lookup, why: string, cause?: unknown, hint?: string): void {
    if (!this.settle(l)) return;
    const opts: { cause?: unknown; hint?: string } = {};
    if (cause !== undefined) opts.cause = cause;
    if (hint !== undefined) opts.hint = hint;
    l.reject(new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what(...l.ask)}: ${why}`, opts));
  }

  private onMessage(msg: Buffer, info: MessageInfo): void {
    if (info.port !== 0) return; // only the kernel answers; ignore other senders
    for (const r of parseReplies(msg)) {
      if (r.seq === undefined) continue;
      const l = this.pending.get(r.seq);
      if (!l || !l.batch) continue;
      if (r.kind === "invalid") this.fail(l, `the kernel's answer is malformed: ${r.reason}`);
      else if (r.kind === "error") {
        if (r.errno === ENOENT) {
          if (this.settle(l)) l.resolve(undefined);
        } else if (r.errno === EPERM) {
          // The kernel checked the whole sendmsg once and answered only its first request.
          for (const b of l.batch) this.fail(b, "the kernel answered EPERM", undefined, HINT_PERM);
        } else {
          this.fail(l, `the kernel answered ${errnoName(r.errno)}`);
        }
      } else if (r.original.proto !== l.proto) {
        this.fail(l, `the kernel answered with an entry of protocol ${r.original.proto}`);
      } else if (this.settle(l)) {
        const dst: OriginalDst = { address: r.original.dst, port: r.original.dstPort };
        if (r.mark !== undefined) dst.mark = r.mark;
        if (r.id !== undefined) dst.ctId = r.id;
        l.resolve(dst);
      }
    }
  }

  private onError(err: ErrnoException): void {
    if (err.code === "ENOBUFS") {
      // Our receive buffer overflowed: some answers are lost, we cannot tell which.
      for (const l of [...this.pending.values()])
        if (l.batch) this.fail(l, "answers were lost (ENOBUFS: the socket's receive buffer overflowed)", err);
      return;
    }
    this.die(`the netlink socket failed: ${err.message}`, err);
  }

  private die(why: string, cause?: unknown): void {
    this.dead = why;
    this.queue.length = 0;
    for (const l of [...this.pending.values()]) this.fail(l, why, cause);
    this.deadlines.stop();
    try {
      this.sock.close();
    } catch {
      // already closed by the binding after a poll error
    }
  }
}
