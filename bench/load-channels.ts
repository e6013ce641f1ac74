/**
 * One request in flight at a time over one client connection: the unit the
 * load generator (load.ts) schedules. Both kinds are raw sockets with
 * pre-encoded requests, so the generator spends its CPU on syscalls, not on
 * building or parsing messages.
 *
 *   HttpChannel: keep-alive TCP, `GET /api/items/1`, response framed by
 *                Content-Length (the bench's upstream always sends one).
 *   DnsChannel:  connected UDP socket, A query for api.example.com, reply
 *                matched by DNS id; a lost reply times out.
 *   FreshDnsChannel: the same query from a new socket (a new source port) each
 *                time, closed when its answer came: what Go's and musl's
 *                resolvers do; each query is a new conntrack entry.
 *
 * Where to: 127.0.0.1:port by default; `to.host` another address and
 * `to.bind` the local address the sockets bind (the proxy bench's network
 * namespace tells the load to redirect from the direct load by it).
 */
import dgram from "node:dgram";
import net from "node:net";

export type Done = (ok: boolean) => void;

export interface Channel {
  /** Sends one request; `done` is called exactly once (ok = a 200 / NOERROR answer). */
  send(done: Done): void;
  /** Fails the outstanding request if it was sent before `before` (ms, performance.now()). */
  expire(before: number): void;
  /** False once the channel broke (connection closed, HTTP timeout): it is not used again. */
  readonly usable: boolean;
  close(): void;
}

const HTTP_REQUEST = Buffer.from(
  "GET /api/items/1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: membrane-bench\r\n\r\n",
  "latin1",
);
const HEAD_END = Buffer.from("\r\n\r\n", "latin1");
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;

class HttpChannel implements Channel {
  usable = true;
  private buf: Buffer = Buffer.alloc(0);
  private done: Done | undefined;
  private sentAt = 0;

  constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("error", () => this.fail());
    sock.on("close", () => this.fail());
  }

  send(done: Done): void {
    this.done = done;
    this.sentAt = performance.now();
    this.sock.write(HTTP_REQUEST);
  }

  expire(before: number): void {
    if (this.done && this.sentAt < before) {
      this.fail();
      this.sock.destroy();
    }
  }

  close(): void {
    this.usable = false;
    this.sock.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    const end = this.buf.indexOf(HEAD_END);
    if (end < 0) return;
    const head = this.buf.toString("latin1", 0, end + 2);
    const len = CONTENT_LENGTH.exec(head)?.[1];
    if (len === undefined) return this.fail();
    const total = end + 4 + Number(len);
    if (this.buf.length < total) return;
    this.buf = this.buf.subarray(total);
    const done = this.done;
    this.done = undefined;
    done?.(head.startsWith("HTTP/1.1 200 "));
  }

  private fail(): void {
    this.usable = false;
    const done = this.done;
    this.done = undefined;
    done?.(false);
  }
}

/** The query every DNS channel sends (id patched per query): A api.example.com, RD. */
function dnsQuery(): Buffer {
  const labels = "api.example.com".split(".");
  const name = Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")])),
    Buffer.from([0]),
  ]);
  const header = Buffer.from([0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, name, Buffer.from([0, 1, 0, 1])]);
}

class DnsChannel implements Channel {
  usable = true;
  private readonly query = dnsQuery();
  private id: number;
  private done: Done | undefined;
  private sentAt = 0;

  constructor(
    private readonly sock: dgram.Socket,
    seed: number,
  ) {
    this.id = (seed * 4099) & 0xffff;
    sock.on("message", (m: Buffer) => {
      if (m.length < 12 || m.readUInt16BE(0) !== this.id || !this.done) return;
      const done = this.done;
      this.done = undefined;
      done((m[3] ?? 0xff) & 0x0f ? false : true);
    });
    sock.on("error", () => undefined);
  }

  send(done: Done): void {
    this.id = (this.id + 1) & 0xffff;
    this.query.writeUInt16BE(this.id, 0);
    this.done = done;
    this.sentAt = performance.now();
    this.sock.send(this.query);
  }

  /** A lost datagram fails its query; the socket stays usable (a late reply has a stale id). */
  expire(before: number): void {
    if (this.done && this.sentAt < before) {
      const done = this.done;
      this.done = undefined;
      done(false);
    }
  }

  close(): void {
    this.usable = false;
    this.sock.close();
  }
}

/** A DNS query at a time, each from a socket of its own (a fresh source port). */
class FreshDnsChannel implements Channel {
  usable = true;
  private readonly query = dnsQuery();
  private id: number;
  private done: Done | undefined;
  private sock: dgram.Socket | undefined;
  private sentAt = 0;

  constructor(
    private readonly to: DnsTarget,
    seed: number,
  ) {
    this.id = (seed * 4099) & 0xffff;
  }

  send(done: Done): void {
    this.id = (this.id + 1) & 0xffff;
    const id = this.id;
    this.query.writeUInt16BE(id, 0);
    this.done = done;
    this.sentAt = performance.now();
    const sock = dgram.createSocket("udp4");
    this.sock = sock;
    sock.on("message", (m: Buffer) => {
      if (m.length < 12 || m.readUInt16BE(0) !== id || this.sock !== sock) return;
      this.finish((m[3] ?? 0xff) & 0x0f ? false : true);
    });
    sock.on("error", () => undefined);
    // dgram queues the send until the bind is done.
    sock.bind({ address: this.to.bind ?? "0.0.0.0", port: 0 });
    sock.send(this.query, this.to.port, this.to.host ?? "127.0.0.1");
  }

  expire(before: number): void {
    if (this.done && this.sentAt < before) this.finish(false);
  }

  close(): void {
    this.usable = false;
    this.finish(false);
  }

  private finish(ok: boolean): void {
    this.sock?.close();
    this.sock = undefined;
    const done = this.done;
    this.done = undefined;
    done?.(ok);
  }
}

export type ChannelKind = "http" | "dns";

/** Where DNS queries go; see the file comment. */
export interface DnsTarget {
  readonly port: number;
  readonly host?: string;
  readonly bind?: string;
  /** A new socket per query (FreshDnsChannel). */
  readonly fresh?: boolean;
}

export async function openChannel(
  kind: ChannelKind,
  port: number,
  seed: number,
  to: Omit<DnsTarget, "port"> = {},
): Promise<Channel> {
  if (kind === "dns" && to.fresh === true) return new FreshDnsChannel({ ...to, port }, seed);
  if (kind === "http") {
    const sock = net.connect(port, "127.0.0.1");
    await new Promise<void>((res, rej) => {
      sock.once("connect", res);
      sock.once("error", rej);
    });
    return new HttpChannel(sock);
  }
  const sock = dgram.createSocket("udp4");
  if (to.bind !== undefined) {
    const bind = to.bind;
    await new Promise<void>((res, rej) => {
      sock.once("error", rej);
      sock.bind({ address: bind, port: 0 }, res);
    });
  }
  await new Promise<void>((res, rej) => {
    sock.once("error", rej);
    sock.connect(port, to.host ?? "127.0.0.1", res);
  });
  return new DnsChannel(sock, seed);
}
