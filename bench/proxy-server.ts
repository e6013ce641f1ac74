/**
 * Membrane's HTTP and DNS proxies in a process of their own, as the
 * benchmark's system under test (the way nginx is its own process).
 *
 *   node dist/bench/proxy-server.js <httpUpstreamPort> <resolverPort>
 *   -> IPC message {httpPort, dnsPort} once both listen on 127.0.0.1
 *
 * HTTP: handleHttpConnection with a rule that allows the bench's request
 * (GET /api/items/[0-9]+), so every request is parsed, matched and
 * re-serialised. DNS: DnsProxy with a matchPattern rule admitting the
 * bench's name, on the product's per-query path: the query's source asked of a
 * conntrack broker over IPC (a stand-in answering without the kernel:
 * proxy-ctbroker.ts), the answer's addresses sent to the agent (here: the
 * bench process, answering as the agent does for addresses it already
 * enforces, proxy-procs.ts actAsAgent) and released on its `dns-done`.
 * Flow events go to a sink that drops them.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { DnsProxy } from "../src/proxy/dns/proxy.js";
import { handleHttpConnection } from "../src/proxy/http/proxy.js";
import { startBroker } from "../src/proxy/runtime/broker-client.js";
import { AgentAnswers } from "../src/proxy/runtime/dns-answers.js";
import { toProxy, type FromProxy } from "../src/proxy/runtime/protocol.js";
import type { ConnectionInfo, L7LookupResult } from "../src/proxy/types.js";
import { benchArgs, forkedOnly } from "./cli.js";

export interface ProxyServerPorts {
  readonly httpPort: number;
  readonly dnsPort: number;
}

const info = (port: number, proto: "TCP" | "UDP"): ConnectionInfo => ({
  srcIdentity: 1000,
  dstIdentity: 2000,
  direction: "egress",
  endpoint: "bench/client",
  originalDst: { host: "127.0.0.1", port },
  proto,
});

const HTTP_POLICY: L7LookupResult = {
  spec: {
    parser: "http",
    http: [{ method: "GET", path: "/api/items/[0-9]+", headers: [] }],
    dns: [],
    kafka: [],
    serverNames: [],
  },
  allowAll: false,
};

const DNS_POLICY: L7LookupResult = {
  spec: { parser: "dns", http: [], dns: [{ matchPattern: "*.example.com" }], kafka: [], serverNames: [] },
  allowAll: false,
};

async function main(upPort: number, resolverPort: number): Promise<void> {
  const http = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) =>
    handleHttpConnection(s, info(upPort, "TCP"), {
      lookup: { forConnection: () => HTTP_POLICY },
      connectUpstream: (host, port) => net.connect({ port, host, noDelay: true }),
      sink: () => undefined,
    }),
  );
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const broker = await startBroker(fileURLToPath(new URL("./proxy-ctbroker.js", import.meta.url)), () =>
    process.exit(1),
  );
  const answers = new AgentAnswers((m: FromProxy) => {
    if (process.connected) process.send?.(m);
  });
  process.on("message", (m: unknown) => {
    const msg = toProxy(m);
    if (msg?.type === "dns-done") answers.done(msg.id, msg.ok, msg.until);
  });
  const dnsLocal = { address: "127.0.0.1", port: 0 };
  const dns = new DnsProxy({
    upstream: { host: "127.0.0.1", port: resolverPort },
    lookup: { forConnection: () => DNS_POLICY },
    identify: async (src, proto) => {
      const dst = await broker.lookup(proto === "UDP" ? "udp" : "tcp", dnsLocal, src);
      return dst ? info(dst.port, proto) : undefined;
    },
    onAnswer: (endpoint, name, ips, ttl) => answers.onAnswer(endpoint, name, ips, ttl),
    sink: () => undefined,
  });
  const { udpPort } = await dns.start();
  dnsLocal.port = udpPort;
  const ports: ProxyServerPorts = { httpPort: (http.address() as AddressInfo).port, dnsPort: udpPort };
  process.send?.(ports);
  process.on("disconnect", () => {
    http.close();
    void dns.stop().then(() => process.exit(0));
  });
}

if (process.argv[1]?.endsWith("/proxy-server.js")) {
  const { args } = benchArgs({
    script: "proxy-server",
    measures: "Not a benchmark of its own: the proxy benchmark's system under test (proxy.js forks it with an IPC channel). Membrane's HTTP and DNS proxies on 127.0.0.1 in front of the given upstream and resolver; sends {httpPort, dnsPort} once both listen.", // prettier-ignore
    root: false,
    args: { usage: "<httpUpstreamPort> <resolverPort>", help: "the HTTP upstream's port and the DNS resolver's", min: 2, max: 2, check: (a) => (a.every((p) => /^\d+$/.test(p) && Number(p) >= 0 && Number(p) <= 65535) ? undefined : `${a.join(" ")}: give two port numbers (0-65535)`) }, // prettier-ignore
    flags: {},
  });
  forkedOnly("proxy-server.js", "proxy.js");
  void main(Number(args[0]), Number(args[1]));
}
