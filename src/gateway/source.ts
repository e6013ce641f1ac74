/**
 * The gateway's source address for a backend connection: one per family (the
 * addresses the ipcache maps to the reserved `ingress` identity). A target of
 * a family without its own source address gets the other family's, so the
 * connect fails (EINVAL: 503) instead of leaving from an address the
 * backends' policy would not judge as `ingress` (fail closed).
 *
 *   sourceFor("fd00::5", {localAddress: "10.0.0.9", localAddress6: "fd00::9"}) --> {localAddress: "fd00::9"}
 */
import net from "node:net";

export interface SourceAddresses {
  /** IPv4 source address (undefined, with localAddress6 too: the kernel picks). */
  readonly localAddress?: string;
  /** IPv6 source address. */
  readonly localAddress6?: string;
}

/** `{localAddress}` for a connection to `target` (spread into net.connect options), `{}` when none is set. */
export function sourceFor(target: string, s: SourceAddresses): { localAddress?: string } {
  const own = net.isIPv6(target) ? s.localAddress6 : s.localAddress;
  const any = own ?? s.localAddress ?? s.localAddress6;
  return any !== undefined ? { localAddress: any } : {};
}

/** The source addresses set in `s` (to pass them on). */
export function sourcesOf(s: SourceAddresses): SourceAddresses {
  return {
    ...(s.localAddress !== undefined ? { localAddress: s.localAddress } : {}),
    ...(s.localAddress6 !== undefined ? { localAddress6: s.localAddress6 } : {}),
  };
}
