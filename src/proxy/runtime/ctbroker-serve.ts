/**
 * The conntrack broker's IPC side (ctbroker.ts holds its lookups): requests
 * from the proxy process in, answers out, nothing else accepted.
 *
 *   proxy --IPC {id, proto, local, remote} | {batch: [...]}--> parse (any other shape: {id: -1, error}) --> lookup
 *         <--IPC {id, address?, port?, mark?, ctId?} | {id, error} | {batch: [...]}--
 *
 * ctId is the conntrack entry's id (CTA_ID, 0 when the kernel sent none): the proxy caches a UDP
 * source's answer only for datagrams whose packet mark carries that id (runtime/dns-origins.ts).
 *
 * Answers that are ready in the same loop turn leave in one message, flushed
 * by setImmediate, not a microtask: the kernel's answers come one netlink
 * callback each, and microtasks run after each callback, so a microtask flush
 * wrote one message per answer (strace: 0.8 pipe writes per lookup). The
 * immediate runs once every callback of the poll phase has: one pipe write
 * per turn, whatever the batch.
 *
 * The asker is unprivileged and may be compromised: work is bounded
 * (MAX_OUTSTANDING lookups at once, more are refused at once), and an
 * answer for a proxy that went away is dropped (the broker then exits).
 * Apart from the broker so that the proxy benchmark's stand-in broker
 * (bench/proxy-ctbroker.ts) serves the same protocol with the same code.
 */
import { isAddrPort } from "../../abi/addr-port.js";

export interface BrokerRequest {
  readonly id: number;
  readonly proto: "tcp" | "udp";
  readonly local: { address: string; port: number };
  readonly remote: { address: string; port: number };
}

export type OriginalLookup = (
  proto: "tcp" | "udp",
  local: BrokerRequest["local"],
  remote: BrokerRequest["remote"],
) => Promise<{ address: string; port: number; mark?: number; ctId?: number } | undefined>;

/** A real address and port (abi/addr-port.ts); the DNS path sends a datagram's rinfo, extra keys and all. */
const isAddr = (v: unknown): v is { address: string; port: number } => isAddrPort(v);

function parse(m: unknown): BrokerRequest | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const r = m as Record<string, unknown>;
  if (typeof r.id !== "number" || (r.proto !== "tcp" && r.proto !== "udp")) return undefined;
  if (!isAddr(r.local) || !isAddr(r.remote)) return undefined;
  return { id: r.id, proto: r.proto, local: r.local, remote: r.remote };
}

const MAX_OUTSTANDING = 4096;
/** The most lookups (and answers) one message carries; a longer batch is refused whole. */
export const MAX_BROKER_BATCH = 256;

/**
 * Answers the proxy if it is still there. A send on a closed channel throws
 * (ERR_IPC_CHANNEL_CLOSED), and a throw inside the netlink binding's callback
 * aborts the process ("terminate called after throwing an instance of
 * 'Napi::Error'", "Channel closed" or "write EPIPE"): seen when the agent gave
 * up on a slow proxy start.
 */
export function replyToProxy(m: object): void {
  if (!process.send || !process.connected) return;
  try {
    // With a callback, an asynchronous failure (EPIPE) goes to it instead of an "error" event.
    process.send(m, undefined, undefined, () => undefined);
  } catch {
    // The proxy went away meanwhile: "disconnect" ends this process.
  }
}

/** Serves the proxy's lookups with `lookup` until the proxy disconnects (then exits 0); reports ready. */
export function serveBroker(lookup: OriginalLookup): void {
  let outstanding = 0;
  let out: object[] = [];
  const flush = (): void => {
    const o = out;
    out = [];
    if (o.length === 1) replyToProxy(o[0] as object);
    else for (let i = 0; i < o.length; i += MAX_BROKER_BATCH) replyToProxy({ batch: o.slice(i, i + MAX_BROKER_BATCH) }); // prettier-ignore
  };
  const answer = (m: object): void => {
    if (out.push(m) === 1) setImmediate(flush);
  };
  const one = (m: unknown): void => {
    const req = parse(m);
    if (!req) return answer({ id: -1, error: "malformed request" });
    if (outstanding >= MAX_OUTSTANDING) return answer({ id: req.id, error: "too many lookups" });
    outstanding++;
    lookup(req.proto, req.local, req.remote)
      .finally(() => outstanding--)
      .then(
        (r) =>
          answer(
            r
              ? { id: req.id, address: r.address, port: r.port, mark: r.mark ?? 0, ctId: r.ctId ?? 0 }
              : { id: req.id },
          ),
        (e: unknown) => answer({ id: req.id, error: e instanceof Error ? e.message : String(e) }),
      );
  };
  process.on("message", (m: unknown) => {
    const batch = typeof m === "object" && m !== null ? (m as { batch?: unknown }).batch : undefined;
    if (batch === undefined) return one(m);
    if (!Array.isArray(batch) || batch.length > MAX_BROKER_BATCH) return answer({ id: -1, error: "malformed request" }); // prettier-ignore
    for (const r of batch) one(r);
  });
  process.on("disconnect", () => process.exit(0));
  replyToProxy({ ready: true });
}
