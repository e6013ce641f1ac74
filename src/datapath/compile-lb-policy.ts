/**
 * The membrane table's part for service connections (lb-compile.ts): policy
 * judges a connection to a ClusterIP, LoadBalancer address or NodePort on the
 * backend the DNAT chose, as Cilium does (its service translation runs before
 * the policy lookup: the client's egress is judged against the backend's
 * identity, the backend's ingress sees the client's identity).
 *
 *   pre_c / out_c (-150): a new connection with CT_SERVICE skips the policy there (SKIP_RULE)
 *   LB table nat (-100): DNAT to a backend
 *   lb_pre_c / lb_out_c (-90): the same dispatch as pre_c / out_c, on the translated packet:
 *     egress of the client endpoint (anti-spoofing, policy, mark_dst = backend's identity),
 *     then mark = client's identity and the ingress of the backend endpoint.
 *
 * An L7 redirect decided here cannot happen any more (the one DNAT of the connection
 * went to the backend), so a connection a policy would hand to the proxy is dropped
 * (fail closed): L7 rules on traffic through a service address are not enforced yet.
 *
 * A connection to an lb-l7 frontend (`service.cilium.io/lb-l7: enabled`) carries CT_SERVICE and
 * CT_REDIRECT_L7 from the LB table's classify (no policy chain can have set the redirect bit by
 * then): it was DNATed to the proxy, which picks a backend per request and judges the client's
 * egress and the backend's ingress for it (agent/proxy-lb.ts); it passes here.
 */
import { hex } from "./policy-groups.js";
import { CT_REDIRECT_DNS, CT_REDIRECT_L7, CT_SERVICE, type ProxyTarget } from "./types.js";

const SVC = hex(CT_SERVICE);
const REDIRECT = hex(CT_REDIRECT_L7 | CT_REDIRECT_DNS);
const L7LB = hex((CT_SERVICE | CT_REDIRECT_L7) >>> 0);

/** In pre_c and out_c, before the dispatch: the policy of a service connection waits for its DNAT. */
export const SKIP_RULE = `ct state new ct mark & ${SVC} != 0 accept`;

const IDENTITY_OF_SOURCE = [
  "meta mark set ip saddr map @ipcache4",
  "meta mark set ip6 saddr map @ipcache6",
  "meta mark set ip saddr map @ipcache4_host",
  "meta mark set ip6 saddr map @ipcache6_host",
];

export function lbPolicyChains(
  host: number,
  proxy: ProxyTarget | undefined,
): { name: string; base: string; rules: string[] }[] {
  const only = ["ct state != new accept", `ct mark & ${SVC} == 0 accept`];
  const failClosed = `ct mark & ${REDIRECT} != 0 drop`;
  const l7lb = `ct mark & ${L7LB} == ${L7LB} accept`;
  return [
    {
      name: "lb_pre_c",
      base: "type filter hook prerouting priority -90; policy accept;",
      rules: [
        ...only,
        l7lb,
        "iifname vmap @egress_ep",
        ...IDENTITY_OF_SOURCE,
        "ip daddr vmap @ingress_ep4",
        "ip6 daddr vmap @ingress_ep6",
        failClosed,
      ],
    },
    {
      name: "lb_out_c",
      base: "type filter hook output priority -90; policy accept;",
      rules: [
        ...only,
        l7lb,
        ...(proxy ? [`meta skgid ${proxy.gid} accept`] : []),
        `meta mark set ${host}`,
        "ip daddr vmap @ingress_ep4",
        "ip6 daddr vmap @ingress_ep6",
        failClosed,
      ],
    },
  ];
}
