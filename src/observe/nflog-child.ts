/**
 * The NFLOG reader process. Node cannot enter a network namespace per thread,
 * so NflogReader starts this file with `ip netns exec <ns> node nflog-child.js`:
 * it opens the netlink socket inside the namespace, binds the log group and
 * forwards every datagram to stdout as a frame (see frames.ts). It exits when
 * its stdin closes (the parent went away) or on SIGTERM.
 *
 *   argv[2] = JSON {group, copyRange, qthreshold, flushTimeoutMs, nlbufsiz, recvBufferBytes}
 */
import { RawNetlinkSocket, type ErrnoException } from "netlink";
import { encodeFrame, FRAME_DATAGRAM, FRAME_STATUS } from "./frames.js";
import { configRequests, NETLINK_NETFILTER, parseNetlink, type NflogConfig } from "./nflog-msg.js";

interface ChildConfig extends NflogConfig {
  group: number;
  recvBufferBytes?: number;
}

function status(s: Record<string, unknown>): void {
  process.stdout.write(encodeFrame(FRAME_STATUS, Buffer.from(JSON.stringify(s))));
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as ChildConfig;
  const recv = cfg.recvBufferBytes ?? 8 << 20;
  const sock = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: recv, sendBufferSize: 1 << 16 });
  const [bind, mode] = configRequests(cfg.group, 1, cfg);
  let acked = 0;
  let ready = false;
  sock.on("message", (msg: Buffer) => {
    const now = Date.now();
    if (!ready) {
      const p = parseNetlink(msg, now);
      for (const a of p.acks) {
        if (a.errno !== 0) {
          const why =
            a.errno === 1
              ? `group ${cfg.group} is bound by another reader (EPERM)`
              : `config request ${a.seq} failed with errno ${a.errno}`;
          status({ error: why, errno: a.errno });
          process.exit(2);
        }
        if (++acked === 2) {
          ready = true;
          status({ ready: true, rcvbuf: sock.getRecvBufferSize() });
        }
      }
      if (p.events.length === 0) return;
    }
    const t = Buffer.alloc(8);
    t.writeDoubleLE(now, 0);
    process.stdout.write(encodeFrame(FRAME_DATAGRAM, Buffer.concat([t, msg])));
  });
  sock.on("error", (err: ErrnoException) => {
    // ENOBUFS: the kernel could not queue events for us; the seq gap counts them.
    status({ overflow: err.code, message: err.message });
  });
  sock.send(bind as Buffer, {}, (err) => {
    if (err) {
      status({ error: `sending the bind request failed: ${err.message}` });
      process.exit(2);
    }
    sock.send(mode as Buffer);
  });
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
  process.on("SIGTERM", () => {
    sock.close();
    process.exit(0);
  });
}

main();
