/**
 * Which DNS lookups the node's DNS proxy sees. toFQDNs learns addresses only
 * from answers the proxy saw, and the proxy sees an endpoint's lookup only
 * when the endpoint's egress policy redirects it there: an allow with DNS
 * rules (`toPorts[].rules.dns`) for some resolver and port, whose rules let
 * the name through (otherwise the proxy answers REFUSED and there is no
 * answer to learn from). As in Cilium, an endpoint whose DNS traffic matches
 * no DNS rule is not intercepted, and its answers teach toFQDNs nothing.
 *
 *   endpoint's egress MapState --(allow entries with a dns L7 spec)--> lookup(name) -> seen?
 */
import { fqdnMatches } from "./l7/fqdn.js";
import type { DirectionPolicy } from "./resolve.js";

/** True when a lookup of `name` by the endpoint whose egress policy this is goes through the DNS proxy and is answered. */
export function proxySeesLookup(egress: DirectionPolicy, name: string): boolean {
  const ms = egress.mapState;
  for (const id of ms.identities()) {
    for (const e of ms.entriesFor(id)) {
      if (e.deny || e.l7?.parser !== "dns") continue;
      // What a lookup to this entry's peer and port really meets (a deny or another parser may win).
      const r = ms.lookup(e.identity, e.proto, e.lo);
      if (r.verdict !== "allow" || !r.l7 || r.l7.conflict || r.l7.spec.parser !== "dns") continue;
      // Without default deny, DNS rules give visibility: every name is answered.
      if (!egress.enforced || r.l7.allowAll) return true;
      if (r.l7.spec.dns.some((rule) => fqdnMatches(rule, name))) return true;
    }
  }
  return false;
}
