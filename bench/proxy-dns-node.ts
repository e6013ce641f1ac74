/**
 * The proxy benchmark's DNS cast inside its network namespace (proxy-dns-lab.ts starts each with
 * `ip netns exec <ns> node proxy-dns-node.js <role> ...` and an IPC channel), as root:
 *
 *   resolver <address>        the bench resolver (proxy-procs.ts) on <address>:53
 *   proxy <address> <port>    Membrane's DNS proxy on <address>:<port>, on the product's path:
 *       each query's source from the real conntrack broker (ctbroker.js: ctnetlink in this
 *       namespace) through DnsOrigins (cached while the datagram's ct id matches), the upstream
 *       the query's original destination (no override), the answer's addresses sent to the
 *       agent (the bench process, proxy-procs.ts actAsAgent) and released on its `dns-done`.
 *       A rule admits the bench's name for any client (the verdict is still computed per query).
 *
 *   -> IPC {port} once listening
 */
import { fileURLToPath } from "node:url";
import { DnsProxy } from "../src/proxy/dns/proxy.js";
import { startBroker } from "../src/proxy/runtime/broker-client.js";
import { AgentAnswers } from "../src/proxy/runtime/dns-answers.js";
import { DnsOrigins } from "../src/proxy/runtime/dns-origins.js";
import { toProxy, type FromProxy } from "../src/proxy/runtime/protocol.js";
import type { L7LookupResult } from "../src/proxy/types.js";
import { benchArgs, forkedOnly } from "./cli.js";
import { startResolver } from "./proxy-procs.js";

const DNS_POLICY: L7LookupResult = {
  spec: { parser: "dns", http: [], dns: [{ matchPattern: "*.example.com" }], kafka: [], serverNames: [] },
  allowAll: false,
};

async function proxy(address: string, port: number): Promise<void> {
  const broker = await startBroker(
    fileURLToPath(new URL("../src/proxy/runtime/ctbroker.js", import.meta.url)),
    () => process.exit(1),
  );
  const answers = new AgentAnswers((m: FromProxy) => {
    if (process.connected) process.send?.(m);
  });
  process.on("message", (m: unknown) => {
    const msg = toProxy(m);
    if (msg?.type === "dns-done") answers.done(msg.id, msg.ok, msg.until);
  });
  const origins = new DnsOrigins(broker, { address, port });
  const dns = new DnsProxy({
    listen: { host: address, udpPort: port, tcpPort: port },
    lookup: { forConnection: () => DNS_POLICY },
    identify: (src, proto) => {
      const info = (dst: { address: string; port: number } | undefined) =>
        dst && {
          srcIdentity: 1000,
          dstIdentity: 2000,
          direction: "egress" as const,
          endpoint: "bench/client",
          originalDst: { host: dst.address, port: dst.port },
          proto,
        };
      const dst = origins.of(src, proto);
      return dst instanceof Promise ? dst.then(info) : info(dst);
    },
    onAnswer: (endpoint, name, ips, ttl) => answers.onAnswer(endpoint, name, ips, ttl),
    sink: () => undefined,
  });
  const { udpPort } = await dns.start();
  if (dns.noPacketMarks !== undefined)
    process.stderr.write(`proxy-dns-node: no ct ids: ${dns.noPacketMarks}\n`);
  process.send?.({ port: udpPort });
  process.on("disconnect", () => {
    broker.close();
    void dns.stop().then(() => process.exit(0));
  });
}

async function resolver(address: string): Promise<void> {
  const r = await startResolver(address, 53);
  process.send?.({ port: r.port });
  process.on("disconnect", () => void r.close().then(() => process.exit(0)));
}

const isIp4 = (a: string | undefined): boolean => /^\d+\.\d+\.\d+\.\d+$/.test(a ?? "");

if (process.argv[1]?.endsWith("/proxy-dns-node.js")) {
  const { args } = benchArgs({
    script: "proxy-dns-node",
    measures: "Not a benchmark of its own: the proxy benchmark's DNS resolver or DNS proxy inside its network namespace (proxy.js starts it with an IPC channel, as root). Sends {port} once listening.", // prettier-ignore
    root: "the conntrack broker's ctnetlink lookups in the bench's network namespace",
    args: { usage: "resolver <address> | proxy <address> <port>", help: "the role, its IPv4 address, and the proxy's port", min: 2, max: 3, check: (a) => ((a[0] === "resolver" && a.length === 2 && isIp4(a[1])) || (a[0] === "proxy" && a.length === 3 && isIp4(a[1]) && /^\d+$/.test(a[2] ?? "") && Number(a[2]) < 65536) ? undefined : `${a.join(" ")}: give "resolver <IPv4>" or "proxy <IPv4> <port>"`) }, // prettier-ignore
    flags: {},
  });
  forkedOnly("proxy-dns-node.js", "proxy.js");
  void (args[0] === "proxy" ? proxy(args[1] as string, Number(args[2])) : resolver(args[1] as string));
}
