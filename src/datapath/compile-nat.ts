/**
 * The proxy's part of the table (compile.ts): the DNAT of connections the
 * policy redirected (a ct mark bit set by a group's redirect chain), and the
 * checks of the proxy target the agent hands over.
 *
 * With several proxy workers (one per core, proxy/runtime/workers.ts) the
 * DNAT spreads new connections over the ports of the workers running now:
 *
 *   dnat ip to 10.0.0.1:numgen inc mod 2 map { 0 : 15001, 1 : 15002 }
 *
 * conntrack keeps each connection on the port its first packet got. A worker
 * that dies leaves the list at the next apply (until then its share of new
 * connections is reset by the kernel: no listener; never forwarded unproxied).
 *
 * dns_id_c (hook input, priority 100): each UDP datagram redirected to the DNS
 * proxy gets its conntrack entry's id as packet mark (`meta mark set ct id`),
 * which the proxy reads with SO_RCVMARK, so that it can reuse conntrack's
 * answer for later datagrams of the same entry (proxy/runtime/dns-origins.ts).
 * Set after every reader of the packet mark on the way in: routing and ip rules
 * ran before the input hook; the input chains that read the mark (the auth gate,
 * priority 10; the host firewall, 0, which sets it itself; the auth table's
 * check_in, -5) come earlier, so a ct id can never pass for PKT_AUTH_OK or an
 * identity. Nothing after it but the socket reads it.
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
  const to = (fam: "ip" | "ip6", addr: string, port: string): string =>
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
      `meta nfproto ${nf} ct mark & ${hex(CT_REDIRECT_DNS)} != 0 meta l4proto { tcp, udp } ${to(fam, addr, spread(dnsPorts(p)))}`,
      `meta nfproto ${nf} ct mark & ${hex(CT_REDIRECT_L7)} != 0 meta l4proto tcp ${to(fam, addr, spread(l7Ports(p)))}`,
    );
  }
  // A redirect bit on anything else (e.g. UDP to the L7 proxy) is a contract breach: drop.
  out.push(`ct mark & ${hex(CT_REDIRECT_L7 | CT_REDIRECT_DNS)} != 0 drop`);
  return out;
}

/** After every input chain that reads the packet mark (see above; test/datapath/dns-id.test.ts checks). */
export const DNS_ID_PRIORITY = 100;
export const DNS_ID_BASE = `type filter hook input priority ${DNS_ID_PRIORITY}; policy accept;`;

/**
 * The DNS proxy's redirected UDP datagrams carry their conntrack entry's id in the packet mark;
 * any other datagram to its port carries 0 (pre_c and out_c leave an identity in the mark, which
 * the proxy must never take for an id).
 */
export function dnsIdRules(p: ProxyTarget): string[] {
  const ports = dnsPorts(p);
  const dport = ports.length === 1 ? String(ports[0]) : `{ ${ports.join(", ")} }`;
  const out: string[] = [];
  for (const [fam, addr] of [
    ["ip", p.ipv4],
    ["ip6", p.ipv6],
  ] as const) {
    if (addr === undefined) continue;
    const to = `${fam} daddr ${addr} udp dport ${dport}`;
    out.push(
      `${to} ct mark & ${hex(CT_REDIRECT_DNS)} != 0 meta mark set ct id`,
      `${to} ct mark & ${hex(CT_REDIRECT_DNS)} == 0 meta mark set 0`,
    );
  }
  return out;
}

/** The most workers one DNAT spreads over (a map of this many elements in the rule). */
export const MAX_PROXY_WORKERS = 256;

const l7Ports = (p: ProxyTarget): readonly number[] =>
  p.l7Ports && p.l7Ports.length > 0 ? p.l7Ports : [p.l7Port];
const dnsPorts = (p: ProxyTarget): readonly number[] =>
  p.dnsPorts && p.dnsPorts.length > 0 ? p.dnsPorts : [p.dnsPort];

/** One port, or a round robin over several (each new connection the next one). */
function spread(ports: readonly number[]): string {
  if (ports.length === 1) return String(ports[0]);
  return `numgen inc mod ${ports.length} map { ${ports.map((port, i) => `${i} : ${port}`).join(", ")} }`;
}

export function checkProxy(p: ProxyTarget): void {
  const port = (n: number): boolean => Number.isInteger(n) && n > 0 && n < 65536;
  if (!port(p.l7Port)) throw invalid("proxy.l7Port", `${p.l7Port} is not a port`);
  if (!port(p.dnsPort)) throw invalid("proxy.dnsPort", `${p.dnsPort} is not a port`);
  for (const [field, ports] of [
    ["proxy.l7Ports", p.l7Ports],
    ["proxy.dnsPorts", p.dnsPorts],
  ] as const) {
    if (ports === undefined) continue;
    if (ports.length > MAX_PROXY_WORKERS)
      throw invalid(field, `${ports.length} ports (at most ${MAX_PROXY_WORKERS} workers)`);
    ports.forEach((n, i) => {
      if (!port(n)) throw invalid(`${field}[${i}]`, `${n} is not a port`);
      if (ports.indexOf(n) !== i) throw invalid(`${field}[${i}]`, `${n} is listed twice`);
    });
  }
  if (!Number.isInteger(p.gid) || p.gid <= 0 || p.gid > 0xfffffffe)
    throw invalid("proxy.gid", `${p.gid} is not a group id above 0`);
  if (p.ipv4 !== undefined && parseAddr(p.ipv4)?.family !== 4)
    throw invalid("proxy.ipv4", `"${p.ipv4}" is not an IPv4 address`);
  if (p.ipv6 !== undefined && parseAddr(p.ipv6)?.family !== 6)
    throw invalid("proxy.ipv6", `"${p.ipv6}" is not an IPv6 address`);
}
