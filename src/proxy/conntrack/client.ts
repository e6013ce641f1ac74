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
 * after `timeoutMs`. The socket lives in the namespace of the process that
 * opened it; ctnetlink needs CAP_NET_ADMIN there.
 */
import { constants as osConstants } from "node:os";
import { RawNetlinkSocket, type ErrnoException, type MessageInfo } from "netlink";
import { MembraneError } from "../../errors.js";
import { addressBytes } from "../../abi/ctnetlink-address.js";
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

interface Lookup {
  readonly seq: number;
  readonly proto: number;
  readonly message: Buffer;
  readonly what: string;
  readonly resolve: (v: OriginalDst | undefined) => void;
  readonly reject: (e: MembraneError) => void;
  timer: NodeJS.Timeout | undefined;
  sent: boolean;
}

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
  private readonly sock: RawNetlinkSocket;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly pending = new Map<number, Lookup>();
  private readonly queue: Lookup[] = [];
  private inFlight = 0;
  private seq: number;
  /** Set when the socket is gone: why every later lookup fails. */
  private dead: string | undefined;

  private constructor(p: { sock: RawNetlinkSocket; timeoutMs: number; maxInFlight: number }) {
    this.sock = p.sock;
    this.timeoutMs = p.timeoutMs;
    this.maxInFlight = p.maxInFlight;
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
      });
    } catch (e) {
      throw new MembraneError("CONNTRACK_FAILED", `Cannot open a ctnetlink socket: ${(e as Error).message}`, {
        cause: e,
        hint: "Membrane needs a Linux kernel with nf_conntrack_netlink and the netlink npm package's prebuilt binding",
      });
    }
    // The socket alone never keeps the process alive; pending lookups do (their timers).
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
    const what = `the original destination of ${proto} ${hostPort(remote)} -> ${hostPort(local)}`;
    if (this.dead !== undefined)
      return Promise.reject(
        new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what}: ${this.dead}`, {
          hint: "open a new ConntrackClient",
        }),
      );
    const bad = argumentProblem(local, remote);
    if (bad !== undefined)
      return Promise.reject(new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what}: ${bad}`));
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
      return Promise.reject(new MembraneError("CONNTRACK_FAILED", `Cannot look up ${what}: ${req.reason}`));
    return new Promise((resolve, reject) => {
      const l: Lookup = {
        seq,
        proto: protoNum,
        message: req.message,
        what,
        resolve,
        reject,
        timer: undefined,
        sent: false,
      };
      l.timer = setTimeout(
        () => this.fail(l, `the kernel did not answer within ${this.timeoutMs} ms`),
        this.timeoutMs,
      );
      this.pending.set(seq, l);
      if (this.inFlight < this.maxInFlight) this.send(l);
      else this.queue.push(l);
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

  private send(l: Lookup): void {
    l.sent = true;
    this.inFlight++;
    this.sock.send(l.message, {}, (err?: ErrnoException) => {
      if (err) this.fail(l, `sending the request failed: ${err.message}`, err);
    });
  }

  /** Removes `l` from the books and lets the next queued lookup onto the wire. */
  private settle(l: Lookup): boolean {
    if (this.pending.get(l.seq) !== l) return false;
    this.pending.delete(l.seq);
    clearTimeout(l.timer);
    if (l.sent) this.inFlight--;
    while (this.inFlight < this.maxInFlight && this.dead === undefined) {
      const next = this.queue.shift();
      if (!next) break;
      if (this.pending.get(next.seq) === next) this.send(next);
    }
    return true;
  }

  private fail(l: Lookup, why: string, cause?: unknown, hint?: string): void {
    if (!this.settle(l)) return;
    const opts: { cause?: unknown; hint?: string } = {};
    if (cause !== undefined) opts.cause = cause;
    if (hint !== undefined) opts.hint = hint;
    l.reject(new MembraneError("CONNTRACK_FAILED", `Cannot look up ${l.what}: ${why}`, opts));
  }

  private onMessage(msg: Buffer, info: MessageInfo): void {
    if (info.port !== 0) return; // only the kernel answers; ignore other senders
    for (const r of parseReplies(msg)) {
      if (r.seq === undefined) continue;
      const l = this.pending.get(r.seq);
      if (!l || !l.sent) continue;
      if (r.kind === "invalid") this.fail(l, `the kernel's answer is malformed: ${r.reason}`);
      else if (r.kind === "error") {
        if (r.errno === ENOENT) {
          if (this.settle(l)) l.resolve(undefined);
        } else {
          const hint = r.errno === EPERM ? HINT_PERM : undefined;
          this.fail(l, `the kernel answered ${errnoName(r.errno)}`, undefined, hint);
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
        if (l.sent) this.fail(l, "answers were lost (ENOBUFS: the socket's receive buffer overflowed)", err);
      return;
    }
    this.die(`the netlink socket failed: ${err.message}`, err);
  }

  private die(why: string, cause?: unknown): void {
    this.dead = why;
    this.queue.length = 0;
    for (const l of [...this.pending.values()]) this.fail(l, why, cause);
    try {
      this.sock.close();
    } catch {
      // already closed by the binding after a poll error
    }
  }
}
