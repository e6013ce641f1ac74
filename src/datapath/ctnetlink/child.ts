/**
 * The conntrack dump-and-delete process. Node cannot enter a network
 * namespace per thread, so conntrack-flush.ts starts this file with
 * `ip netns exec <node netns> node child.js '<json>'`; ctnetlink then speaks
 * for that namespace (CAP_NET_ADMIN there).
 *
 *   argv[2] = {"mark": m, "mask": k, "addresses": [...], "maxEntries": n}
 *   stdout  <- {"entries": [{proto, src, srcPort, dst, dstPort, mark}], "local": [addresses]}
 *              (entries with ct mark & k == m, the kernel filters; and, when "addresses" is
 *              given, with one of them as source or destination; "local": this namespace's
 *              own addresses)
 *              | {"error": "..."}
 *   stdin   -> {"delete": [{proto, src, srcPort, dst, dstPort}]}        (original tuples)
 *   stdout  <- {"deleted": n, "gone": n, "failed": ["..."]}, then exit 0
 *
 * It exits when its stdin closes (the parent went away).
 */
import { networkInterfaces } from "node:os";
import { createInterface } from "node:readline";
import { RawNetlinkSocket, type ErrnoException } from "netlink";
import { buildDeleteRequest, buildDumpRequest, parseDumpReplies, type DumpReply } from "./dump.js";
import { addressBytes } from "../../abi/ctnetlink-address.js";
import { NETLINK_NETFILTER, type TupleQuery } from "../../abi/ctnetlink-wire.js";

const ENOENT = 2;

function say(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + "\n");
}

function fail(why: string): never {
  say({ error: why });
  process.exit(2);
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as {
    mark?: number;
    mask?: number;
    addresses?: string[];
    maxEntries?: number;
  };
  const maxEntries = cfg.maxEntries ?? 1_000_000;
  const key = (a: string): string => Buffer.from(addressBytes(a)?.bytes ?? []).toString("hex");
  const wanted = cfg.addresses ? new Set(cfg.addresses.map(key)) : undefined;
  let sock: RawNetlinkSocket;
  try {
    sock = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 4 << 20, sendBufferSize: 1 << 20 });
  } catch (e) {
    fail(`cannot open a ctnetlink socket: ${(e as Error).message}`);
  }
  let onReply: (r: DumpReply) => void = () => undefined;
  sock.on("message", (msg: Buffer, info) => {
    if (info.port !== 0) return; // only the kernel speaks to us
    for (const r of parseDumpReplies(msg)) onReply(r);
  });
  sock.on("error", (err: ErrnoException) => fail(`the netlink socket failed: ${err.message}`));

  const entries: (TupleQuery & { mark: number })[] = [];
  const dumpSeq = 1;
  onReply = (r) => {
    if (r.seq !== dumpSeq) return;
    if (r.kind === "entry") {
      if (wanted && !wanted.has(key(r.original.src)) && !wanted.has(key(r.original.dst))) return;
      if (entries.length >= maxEntries) fail(`more than ${maxEntries} conntrack entries`);
      const { proto, src, srcPort, dst, dstPort } = r.original;
      entries.push({ proto, src, srcPort, dst, dstPort, mark: r.mark });
    } else if (r.kind === "invalid") fail(`the kernel's dump is malformed: ${r.reason}`);
    else if (r.kind === "error" && r.errno !== 0) fail(`the kernel refused the dump (errno ${r.errno})`);
    else if (r.kind === "done" || r.kind === "error") {
      const local = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
      say({ entries, local });
      awaitDeletes(sock, (h) => (onReply = h));
    }
  };
  sock.send(buildDumpRequest(dumpSeq, { mark: cfg.mark ?? 0, mask: cfg.mask ?? 0 }), {}, (err) => {
    if (err) fail(`sending the dump request failed: ${err.message}`);
  });
}

/** Reads one `{"delete": [...]}` line, deletes those entries one by one, reports, exits. */
function awaitDeletes(sock: RawNetlinkSocket, setHandler: (h: (r: DumpReply) => void) => void): void {
  const rl = createInterface({ input: process.stdin });
  rl.on("close", () => process.exit(0));
  rl.once("line", (line) => {
    const tuples = (JSON.parse(line) as { delete?: TupleQuery[] }).delete ?? [];
    const result = { deleted: 0, gone: 0, failed: [] as string[] };
    let i = 0;
    let seq = 100;
    const next = (): void => {
      const t = tuples[i++];
      if (!t) {
        say(result);
        process.exit(0);
      }
      const req = buildDeleteRequest(++seq, t);
      if (!req.ok) {
        result.failed.push(req.reason);
        return next();
      }
      sock.send(req.message, {}, (err) => {
        if (err) {
          result.failed.push(`sending a delete failed: ${err.message}`);
          next();
        }
      });
    };
    setHandler((r) => {
      if (r.seq !== seq) return;
      if (r.kind === "error" && r.errno === 0) result.deleted++;
      else if (r.kind === "error" && r.errno === ENOENT) result.gone++;
      else result.failed.push(r.kind === "error" ? `errno ${r.errno}` : `unexpected answer ${r.kind}`);
      next();
    });
    next();
  });
}

main();
