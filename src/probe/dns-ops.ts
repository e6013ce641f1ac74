/**
 * DNS for probes: a tiny authoritative resolver whose answers the driver sets
 * name by name, and a client asking A or AAAA over UDP or TCP.
 *
 *   {op: "dns-serve", proto: "udp"|"tcp", port}   resolver on [::]:port (IPv4 too)
 *   {op: "dns-set", name, ips, ttl?}               answers for a name (every resolver of this probe)
 *   {op: "dns-query", host, port, name, qtype?: "A"|"AAAA", tcp?, timeoutMs}
 *                                                  -> "NOERROR 1.2.3.4,..." | "REFUSED" | "SERVFAIL" | "timeout" | errno
 *
 * The resolver answers NOERROR to every query: the addresses set for the
 * name and type, or none (so an allowed query teaches nobody an address the
 * driver did not set). Anything that is not a DNS query is echoed back, so
 * a plain probe to the same port still gets its answer.
 */
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import net from "node:net";

const answers = new Map<string, { ips: string[]; ttl: number }>();
const key = (name: string): string => name.toLowerCase().replace(/\.$/, "");

/** Sets the addresses the resolvers of this probe answer for `name`. */
export function dnsSet(name: string, ips: readonly string[], ttl = 60): string {
  answers.set(key(name), { ips: [...ips], ttl });
  return "ok";
}

/** The answer to a query packet, or undefined when `msg` is not a DNS query. */
function reply(msg: Buffer): Buffer | undefined {
  let q: dnsPacket.DecodedPacket;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return undefined;
  }
  const question = q.questions?.[0];
  if (q.type !== "query" || q.questions?.length !== 1 || !question) return undefined;
  const a = answers.get(key(question.name));
  const v6 = question.type === "AAAA";
  const ips = (a?.ips ?? []).filter((ip) => net.isIPv6(ip) === v6 && (question.type === "A" || v6));
  return dnsPacket.encode({
    type: "response",
    id: q.id ?? 0,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
    questions: [question],
    answers: ips.map((ip) => ({
      type: v6 ? ("AAAA" as const) : ("A" as const),
      name: question.name,
      ttl: a?.ttl ?? 60,
      data: ip,
    })),
  });
}

/** A resolver on [::]:port: UDP datagrams, or TCP with 2-byte length frames. */
export function dnsServe(proto: "udp" | "tcp", port: number, bump: (k: string) => void): Promise<string> {
  return new Promise((resolve) => {
    if (proto === "udp") {
      const sock = dgram.createSocket({ type: "udp6", ipv6Only: false });
      sock.on("message", (m, rinfo) => {
        bump(`udp/${port}`);
        sock.send(reply(m) ?? m, rinfo.port, rinfo.address);
      });
      sock.on("error", (e) => resolve(String(e)));
      sock.bind(port, "::", () => resolve("ok"));
      return;
    }
    const srv = net.createServer((s) => {
      bump(`tcp/${port}`);
      s.on("error", () => undefined);
      let buf = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const len = buf.length >= 2 ? buf.readUInt16BE(0) : -1;
          const answer = len >= 12 && buf.length >= 2 + len ? reply(buf.subarray(2, 2 + len)) : undefined;
          if (!answer) break;
          buf = buf.subarray(2 + len);
          const head = Buffer.alloc(2);
          head.writeUInt16BE(answer.length);
          s.write(Buffer.concat([head, answer]));
        }
        // Not (the start of) a DNS frame: an echo probe.
        if (buf.length >= 2 && buf.readUInt16BE(0) > 4096) {
          s.write(buf);
          buf = Buffer.alloc(0);
        }
      });
    });
    srv.on("error", (e) => resolve(String(e)));
    srv.listen({ port, host: "::", ipv6Only: false }, () => resolve("ok"));
  });
}

export interface DnsQueryCmd {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  readonly qtype?: "A" | "AAAA";
  readonly tcp?: boolean;
  readonly timeoutMs: number;
}

function summary(m: Buffer, id: number): string | undefined {
  const a = dnsPacket.decode(m);
  if (a.id !== id) return undefined;
  const ips = (a.answers ?? []).flatMap((x) => (x.type === "A" || x.type === "AAAA" ? [String(x.data)] : []));
  return `${(a as { rcode?: string }).rcode ?? "?"}${ips.length ? " " + ips.join(",") : ""}`;
}

/** One query; the rcode and the addresses of the answer. */
export function dnsQuery(c: DnsQueryCmd): Promise<string> {
  const id = Math.floor(Math.random() * 65535);
  const q = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: c.qtype ?? "A", name: c.name }],
  });
  return new Promise((resolve) => {
    let close = (): void => undefined;
    const t = setTimeout(() => finish("timeout"), c.timeoutMs);
    const finish = (r: string): void => {
      clearTimeout(t);
      close();
      resolve(r);
    };
    const read = (m: Buffer): void => {
      try {
        const r = summary(m, id);
        if (r !== undefined) finish(r);
      } catch {
        finish("malformed");
      }
    };
    if (!c.tcp) {
      const sock = dgram.createSocket(net.isIPv6(c.host) ? "udp6" : "udp4");
      close = () => sock.close();
      sock.on("message", read);
      sock.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
      sock.send(q, c.port, c.host);
      return;
    }
    const s = net.connect({ host: c.host, port: c.port });
    close = () => s.destroy();
    let buf = Buffer.alloc(0);
    s.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
    s.on("close", () => finish("closed"));
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0))
        read(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    const head = Buffer.alloc(2);
    head.writeUInt16BE(q.length);
    s.on("connect", () => s.write(Buffer.concat([head, q])));
  });
}
