/**
 * The one privileged part of the proxy: conntrack lookups of original
 * destinations (ctnetlink needs CAP_NET_ADMIN, checked on every request).
 *
 *   proxy process (unprivileged: parses hostile bytes) --IPC {id, proto, local, remote}-->
 *     ctbroker (root, forked before the proxy drops root; node netns) --ctnetlink--> kernel
 *   <--IPC {id, address?, port?, error?}--
 *
 * It does nothing else and accepts nothing else: a request of any other
 * shape is answered with an error. When the proxy goes away, so does it.
 */
import { ConntrackClient } from "../conntrack/client.js";

interface Req {
  id: number;
  proto: "tcp" | "udp";
  local: { address: string; port: number };
  remote: { address: string; port: number };
}

const isAddr = (v: unknown): v is { address: string; port: number } =>
  typeof v === "object" &&
  v !== null &&
  typeof (v as { address?: unknown }).address === "string" &&
  typeof (v as { port?: unknown }).port === "number";

function parse(m: unknown): Req | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const r = m as Record<string, unknown>;
  if (typeof r.id !== "number" || (r.proto !== "tcp" && r.proto !== "udp")) return undefined;
  if (!isAddr(r.local) || !isAddr(r.remote)) return undefined;
  return { id: r.id, proto: r.proto, local: r.local, remote: r.remote };
}

const MAX_OUTSTANDING = 4096;
let outstanding = 0;

/**
 * Answers the proxy if it is still there. A send on a closed channel throws
 * (ERR_IPC_CHANNEL_CLOSED), and a throw inside the netlink binding's callback
 * aborts the process ("terminate called after throwing an instance of
 * 'Napi::Error'", "Channel closed" or "write EPIPE"): seen when the agent gave
 * up on a slow proxy start.
 */
function reply(m: object): void {
  if (!process.send || !process.connected) return;
  try {
    // With a callback, an asynchronous failure (EPIPE) goes to it instead of an "error" event.
    process.send(m, undefined, undefined, () => undefined);
  } catch {
    // The proxy went away meanwhile: "disconnect" ends this process.
  }
}

async function main(): Promise<void> {
  const ct = await ConntrackClient.open();
  process.on("message", (m: unknown) => {
    const req = parse(m);
    if (!req) return reply({ id: -1, error: "malformed request" });
    // The asker is unprivileged and may be compromised: bounded work, never a growing queue.
    if (outstanding >= MAX_OUTSTANDING) return reply({ id: req.id, error: "too many lookups" });
    outstanding++;
    ct.originalDst(req.proto, req.local, req.remote)
      .finally(() => outstanding--)
      .then(
        (r) =>
          reply(r ? { id: req.id, address: r.address, port: r.port, mark: r.mark ?? 0 } : { id: req.id }),
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
