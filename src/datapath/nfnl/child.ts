/**
 * The set-element writer process: Node cannot enter a network namespace, so
 * setelem.ts starts this file in the node's namespace (`ip netns exec <ns>
 * node child.js`, or plainly when the agent enforces in its own namespace) and
 * keeps it for the agent's life. It speaks nf_tables for that namespace.
 *
 *   stdin  -> frames: u32le length of what follows, u32le id, the bytes of one nf_tables batch
 *             (abi/nft-setelem-wire.ts; binary, so that thousands of elements cost no text)
 *   stdout <- {"id": n, "ok": true} | {"id": n, "ok": false, "errno": e, "error": "..."}
 *
 * One frame is one atomic batch, made by the agent (setElemBatch); this process
 * checks that it holds set-element changes only, numbers its messages in its
 * own sequence (renumberBatch) and sends it. Frames are handled one at a time,
 * in order. It exits when its stdin closes (the agent went away).
 */
import { RawNetlinkSocket, type ErrnoException } from "netlink";
import { NETLINK_NETFILTER } from "../../abi/ctnetlink-wire.js";
import { parseAcks, renumberBatch } from "../../abi/nft-setelem-wire.js";

interface Request {
  id: number;
  batch: Buffer;
}

/** A frame longer than this is not one the agent sends: the writer stops. */
const MAX_FRAME = 256 << 20;

const say = (v: unknown): void => void process.stdout.write(JSON.stringify(v) + "\n");

function main(): void {
  let sock: RawNetlinkSocket;
  try {
    sock = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 4 << 20 });
  } catch (e) {
    say({ id: 0, ok: false, error: `cannot open an nfnetlink socket: ${(e as Error).message}` });
    process.exit(2);
  }
  let waiting: { id: number; seqs: Set<number>; first: number; last: number; errno: number } | undefined;
  const queue: Request[] = [];
  let seq = 1;
  const finish = (): void => {
    const w = waiting;
    if (!w) return;
    waiting = undefined;
    say(
      w.errno === 0
        ? { id: w.id, ok: true }
        : { id: w.id, ok: false, errno: w.errno, error: `errno ${w.errno}` },
    );
    next();
  };
  sock.on("message", (msg: Buffer, info) => {
    if (info.port !== 0 || !waiting) return;
    for (const [s, errno] of parseAcks(msg)) {
      if (s < waiting.first || s > waiting.last) continue; // a late answer to an earlier batch
      waiting.seqs.delete(s);
      // An error aborts the whole batch (and may answer the batch header, which is not awaited).
      if (errno !== 0) {
        waiting.errno = errno;
        waiting.seqs.clear();
      }
    }
    if (waiting.seqs.size === 0) finish();
  });
  sock.on("error", (err: ErrnoException) => {
    say({ id: waiting?.id ?? 0, ok: false, error: `the netlink socket failed: ${err.message}` });
    process.exit(2);
  });
  const next = (): void => {
    if (waiting) return;
    const r = queue.shift();
    if (!r) return;
    let batch: { bytes: Buffer; seqs: number[] };
    try {
      batch = { bytes: r.batch, seqs: renumberBatch(r.batch, seq) };
    } catch (e) {
      say({ id: r.id, ok: false, error: (e as Error).message });
      return next();
    }
    const first = seq;
    seq += batch.seqs.length + 2;
    if (batch.seqs.length === 0) {
      say({ id: r.id, ok: true });
      return next();
    }
    waiting = { id: r.id, seqs: new Set(batch.seqs), first, last: seq - 1, errno: 0 };
    sock.send(batch.bytes, {}, (err) => {
      if (err && waiting) {
        waiting.errno = err.errno ?? -1;
        waiting.seqs.clear();
        finish();
      }
    });
  };
  let buf: Buffer = Buffer.alloc(0);
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("data", (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readUInt32LE(0);
      if (len < 4 || len > MAX_FRAME) {
        say({ id: 0, ok: false, error: `a request frame of ${len} bytes` });
        process.exit(2);
      }
      if (buf.length < 4 + len) break;
      // A copy: the batch is renumbered in place, and `buf` may be a slice of a larger chunk.
      queue.push({ id: buf.readUInt32LE(4), batch: Buffer.from(buf.subarray(8, 4 + len)) });
      buf = buf.subarray(4 + len);
    }
    next();
  });
}

main();
