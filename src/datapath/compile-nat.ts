/**
 * The proxy's part of the table (compile.ts): the DNAT of connections the
 * policy redirected (a ct mark bit set by a group's redirect chain), and the
 * checks of the proxy target the agent hands over.
 */
import { parseAddr } from "../labels/cidr.js";
import { invalid } from "./compile-error.js";
import { hex } from "./policy-groups.js";
import { CT_REDIRECT_DNS, CT_REDIRECT_L7, type ProxyTarget } from "./types.js";

export const NAT_BASE = "type nat hook prerouting priority dstnat; policy accept;";
export const NAT_OUT_BASE = "type nat hook output priority -100; policy accept;";

/** DNAT of redirected connections (the first packet only; conntrack does the rest). */
export function natRules(p: ProxyTarget): string[] {
  const out: string[] = [];
  const to = (fam: "ip" | "ip6", addr: string, port: number): string =>
    fam === "ip" ? `dnat ip to ${addr}:${port}` : `dnat ip6 to [${addr}]:${port}`;
  for (const [fam, addr] of [
    ["ip", p.ipv4],
    ["ip6", p.ipv6],
  ] as const) {
    const nf = fam === "ip" ? "ipv4" : "ipv6";
    if (addr === undefined) {
      // No listener in this family: a redirected connection must not pass unproxied.
      out.push(`meta nfproto ${nf} ct mark & ${hex(CT_REDIRECT_L7 | CT_REDIRECT_DNS)} != 0 drop`);
      continue;
    }
    out.push(
      `meta nfproto ${nf} ct mark & ${hex(CT_REDIRECT_DNS)} != 0 meta l4proto { tcp, udp } ${to(fam, addr, p.dnsPort)}`,
      `meta nfproto ${nf} ct mark & ${hex(CT_REDIRECT_L7)} != 0 meta l4proto tcp ${to(fam, addr, p.l7Port)}`,
    );
  }
  // A redirect bit on anything else (e.g. UDP to the L7 proxy) is a contract breach: drop.
  out.push(`ct mark & ${hex(CT_REDIRECT_L7 | CT_REDIRECT_DNS)} != 0 drop`);
  return out;
}

export function checkProxy(p: ProxyTarget): void {
  const port = (n: number): boolean => Number.isInteger(n) && n > 0 && n < 65536;
  if (!port(p.l7Port)) throw invalid("proxy.l7Port", `${p.l7Port} is not a port`);
  if (!port(p.dnsPort)) throw invalid("proxy.dnsPort", `${p.dnsPort} is not a port`);
  if (!Number.isInteger(p.gid) || p.gid <= 0 || p.gid > 0xfffffffe)
    throw invalid("proxy.gid", `${p.gid} is not a group id above 0`);
  if (p.ipv4 !== undefined && parseAddr(p.ipv4)?.family !== 4)
    throw invalid("proxy.ipv4", `"${p.ipv4}" is not an IPv4 address`);
  if (p.ipv6 !== undefined && parseAddr(p.ipv6)?.family !== 6)
    throw invalid("proxy.ipv6", `"${p.ipv6}" is not an IPv6 address`);
}
