/**
 * The proxy benchmark's stand-in for the conntrack broker: the real broker's
 * IPC protocol and code (src/proxy/runtime/ctbroker-serve.ts), answering every
 * lookup with 127.0.0.1:53 instead of asking the kernel (the bench runs on
 * loopback: no DNAT, no root; proxy-server.js sends every query to the bench
 * resolver, its `upstream`). So the DNS proxy under test pays the product's
 * per-query IPC round trip to its broker; the kernel's own part of a lookup
 * (one ctnetlink request) is left out.
 */
import { serveBroker } from "../src/proxy/runtime/ctbroker-serve.js";
import { benchArgs, forkedOnly } from "./cli.js";

if (process.argv[1]?.endsWith("/proxy-ctbroker.js")) {
  benchArgs({
    script: "proxy-ctbroker",
    measures: "Not a benchmark of its own: the proxy benchmark's stand-in conntrack broker (proxy-server.js forks it with an IPC channel). Serves the broker's protocol, answering every lookup with 127.0.0.1:53 without asking the kernel.", // prettier-ignore
    root: false,
    flags: {},
  });
  forkedOnly("proxy-ctbroker.js", "proxy-server.js");
  serveBroker(() => Promise.resolve({ address: "127.0.0.1", port: 53, mark: 0 }));
}
