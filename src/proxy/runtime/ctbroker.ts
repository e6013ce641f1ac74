/**
 * The one privileged part of the proxy: conntrack lookups of original
 * destinations (ctnetlink needs CAP_NET_ADMIN, checked on every request).
 *
 *   proxy process (unprivileged: parses hostile bytes) --IPC {id, proto, local, remote}-->
 *     ctbroker (root, forked before the proxy drops root; node netns) --ctnetlink--> kernel
 *   <--IPC {id, address?, port?, mark?, ctId?, error?}--
 *
 * It does nothing else and accepts nothing else: a request of any other
 * shape is answered with an error (ctbroker-serve.ts). When the proxy goes
 * away, so does it.
 */
import { ConntrackClient } from "../conntrack/client.js";
import { replyToProxy, serveBroker } from "./ctbroker-serve.js";

async function main(): Promise<void> {
  const ct = await ConntrackClient.open();
  serveBroker((proto, local, remote) => ct.originalDst(proto, local, remote));
}

main().catch((e: unknown) => {
  replyToProxy({ fatal: e instanceof Error ? e.message : String(e) });
  process.exit(1);
});
