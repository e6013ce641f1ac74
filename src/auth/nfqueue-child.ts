/**
 * The NFQUEUE reader process. Node cannot enter a network namespace per thread, so AuthQueue
 * (queue.ts) starts this file with `ip netns exec <ns> node nfqueue-child.js` (or plainly in the
 * agent's own namespace): it binds the queue over NETLINK_NETFILTER and passes datagrams both
 * ways, parsing nothing but the acks of its own config requests.
 *
 *   kernel --datagram--> stdout frame (observe/frames.ts: kind 1 receive time + datagram, kind 2 status JSON)
 *   stdin: u32le length + one verdict message (abi/nfqueue-wire.ts) --> kernel
 *
 * It exits when its stdin closes (the agent went away): the queue is then unbound and the kernel
 * drops what it would queue (the rule has no bypass), so no agent means no new pair.
 *   argv[2] = JSON {queue, copyRange, maxLen}
 */
import { RawNetlinkSocket, type ErrnoException } from "netlink";
import { encodeFrame, FRAME_DATAGRAM, FRAME_STATUS } from "../observe/frames.js";
import { configRequests, parseQueue } from "../abi/nfqueue-wire.js";

const NETLINK_NETFILTER = 12;
const MAX_VERDICT = 4096;

function status(s: Record<string, unknown>): void {
  process.stdout.write(encodeFrame(FRAME_STATUS, Buffer.from(JSON.stringify(s))));
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as { queue: number; copyRange: number; maxLen: number };
  const sock = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 18 });
  const reqs = configRequests(cfg.queue, 1, cfg);
  let acked = 0;
  let ready = false;
  sock.on("message", (msg: Buffer) => {
    if (!ready) {
      const p = parseQueue(msg);
      for (const a of p.acks) {
        if (a.errno !== 0) {
          status({ error: a.errno === 16 || a.errno === 1 ? `queue ${cfg.queue} is bound by another process` : `config request ${a.seq} failed with errno ${a.errno}`, errno: a.errno }); // prettier-ignore
          process.exit(2);
        }
        if (++acked === reqs.length) {
          ready = true;
          status({ ready: true });
        }
      }
      if (p.packets.length === 0) return;
    }
    // As the NFLOG child's frames: the receive time first (the agent's profile of a held packet).
    const at = Buffer.alloc(8);
    at.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
    process.stdout.write(encodeFrame(FRAME_DATAGRAM, Buffer.concat([at, msg])));
  });
  sock.on("error", (err: ErrnoException) => status({ overflow: err.code, message: err.message }));
  const sendAll = (i: number): void => {
    const r = reqs[i];
    if (!r) return;
    sock.send(r, {}, (err) => {
      if (err) {
        status({ error: `sending config request ${i + 1} failed: ${err.message}` });
        process.exit(2);
      }
      sendAll(i + 1);
    });
  };
  sendAll(0);
  let pending: Buffer = Buffer.alloc(0);
  process.stdin.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const len = pending.readUInt32LE(0);
      if (len > MAX_VERDICT) {
        status({ error: `a verdict of ${len} bytes is not one the agent sends` });
        process.exit(2);
      }
      if (pending.length < 4 + len) break;
      sock.send(Buffer.from(pending.subarray(4, 4 + len)));
      pending = pending.subarray(4 + len);
    }
  });
  process.stdin.on("close", () => process.exit(0));
  process.on("SIGTERM", () => {
    sock.close();
    process.exit(0);
  });
}

main();
