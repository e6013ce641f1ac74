/**
 * The one privileged part of the mTLS node tunnel, forked while the tunnel process is still
 * root (and in the tunnel's group, so the sockets it makes carry that group: `meta skgid`):
 *
 *   tunnel (unprivileged, parses TLS and HTTP/2 from the network)
 *     --IPC {id, op: "ct", local, remote}--> original destination of a redirected connection (ctnetlink)
 *     --IPC {id, op: "sock", family, mark}--> a new unconnected TCP socket with SO_MARK = mark,
 *                                              bound to port 0 (the kernel picks its local port
 *                                              now), kept here; answered with that port
 *     --IPC {id, op: "take", port}-----------> that socket, sent as a handle; the tunnel connects
 *                                              it at once (in between it told the agent which
 *                                              connection the port will carry: flows name the
 *                                              source pod). Unconnected in Node's hands across a
 *                                              poll, a socket reads ENOTCONN and is destroyed, and
 *                                              connect() on a destroyed net.Socket makes a new,
 *                                              UNMARKED one: hence kept here until taken.
 *                                              Not taken within 10 s: closed.
 *
 * The mark is the source identity the receiving node's kernel judges (datapath out_c keeps the
 * mark of the tunnel group's sockets): only identity values are accepted (1..IDENTITY_MASK),
 * never the high bits other parts of the datapath give meaning to. Anything else is refused.
 */
import { closeSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { isAddrPort } from "../../abi/addr-port.js";
import { IDENTITY_MASK } from "../../abi/marks.js";
import { ConntrackClient } from "../../proxy/conntrack/client.js";

interface Addon {
  markedSocket(family: 4 | 6, mark: number, bind?: boolean): number;
  localPort(fd: number): number;
}

const ADDON = fileURLToPath(new URL("../../../bin/membrane-sockmark.node", import.meta.url));

type Req =
  | { id: number; op: "ct"; local: { address: string; port: number }; remote: { address: string; port: number } } // prettier-ignore
  | { id: number; op: "sock"; family: 4 | 6; mark: number }
  | { id: number; op: "take"; port: number };

/** A real address and port, and nothing else: the tunnel sends exactly these two (abi/addr-port.ts). */
const isAddr = (v: unknown): v is { address: string; port: number } => isAddrPort(v, true);

function parse(m: unknown): Req | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const r = m as Record<string, unknown>;
  if (typeof r["id"] !== "number") return undefined;
  const id = r["id"];
  if (r["op"] === "ct" && isAddr(r["local"]) && isAddr(r["remote"]))
    return { id, op: "ct", local: r["local"], remote: r["remote"] };
  const port = r["port"];
  if (r["op"] === "take" && typeof port === "number" && Number.isInteger(port) && port > 0 && port < 65536)
    return { id, op: "take", port };
  const mark = r["mark"];
  if (
    r["op"] === "sock" &&
    (r["family"] === 4 || r["family"] === 6) &&
    typeof mark === "number" &&
    Number.isInteger(mark) &&
    mark > 0 &&
    mark <= IDENTITY_MASK
  )
    return { id, op: "sock", family: r["family"], mark };
  return undefined;
}

function reply(m: object, handle?: net.Socket): void {
  if (!process.send || !process.connected) return;
  try {
    process.send(m, handle, undefined, () => undefined);
  } catch {
    /* the tunnel went away: "disconnect" ends this process */
  }
}

const MAX_OUTSTANDING = 4096;
let outstanding = 0;
/** Bound, marked sockets not taken yet: local port -> fd (and its expiry timer). */
const held = new Map<number, { fd: number; timer: NodeJS.Timeout }>();
const HOLD_MS = 10_000;

async function main(): Promise<void> {
  const require = createRequire(import.meta.url);
  const addon = require(ADDON) as Addon;
  const ct = await ConntrackClient.open();
  process.on("message", (m: unknown) => {
    const req = parse(m);
    if (!req) return reply({ id: -1, error: "malformed request" });
    if (req.op === "sock") {
      if (held.size >= MAX_OUTSTANDING) return reply({ id: req.id, error: "too many sockets held" });
      try {
        const fd = addon.markedSocket(req.family, req.mark, true);
        let port: number;
        try {
          port = addon.localPort(fd);
        } catch (e) {
          closeSync(fd);
          throw e;
        }
        const timer = setTimeout(() => (held.delete(port), closeSync(fd)), HOLD_MS);
        held.set(port, { fd, timer });
        reply({ id: req.id, port });
      } catch (e) {
        reply({ id: req.id, error: e instanceof Error ? e.message : String(e) });
      }
      return;
    }
    if (req.op === "take") {
      const h = held.get(req.port);
      if (!h) return reply({ id: req.id, error: `no socket held on port ${req.port}` });
      held.delete(req.port);
      clearTimeout(h.timer);
      reply({ id: req.id }, new net.Socket({ fd: h.fd }));
      return;
    }
    if (outstanding >= MAX_OUTSTANDING) return reply({ id: req.id, error: "too many lookups" });
    outstanding++;
    ct.originalDst("tcp", req.local, req.remote)
      .finally(() => outstanding--)
      .then(
        (r) => reply(r ? { id: req.id, address: r.address, port: r.port } : { id: req.id }),
        (e: unknown) => reply({ id: req.id, error: e instanceof Error ? e.message : String(e) }),
      );
  });
  process.on("disconnect", () => process.exit(0));
  reply({ ready: true });
}

main().catch((e: unknown) => {
  reply({ fatal: e instanceof Error ? e.message : String(e) });
  process.exit(1);
});
