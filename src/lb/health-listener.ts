/**
 * Child of health-server.ts, started by `nsenter --net=<node netns>`: listens on one TCP port
 * (a Service's healthCheckNodePort) on every address of the node's namespace, IPv6 and IPv4 when
 * the namespace has IPv6, hands the listening socket to the agent over the IPC channel, and
 * exits. Nothing else runs here: the agent serves the requests.
 */
import { createServer, type Server } from "node:net";

const port = Number(process.argv[2]);
if (process.send === undefined || !Number.isInteger(port) || port < 1 || port > 65535) process.exit(2);

const handOver = (server: Server): void => {
  process.send?.({ ok: true }, server, () => process.exit(0));
};
const refuse = (e: NodeJS.ErrnoException): void => {
  process.send?.({ error: e.code ?? e.message }, () => process.exit(1));
};

const dual = createServer();
dual.once("error", (e: NodeJS.ErrnoException) => {
  // No IPv6 in this namespace: IPv4 alone. Anything else (the port is taken) is the answer.
  if (e.code !== "EAFNOSUPPORT" && e.code !== "EADDRNOTAVAIL") return refuse(e);
  const v4 = createServer();
  v4.once("error", refuse);
  v4.listen({ port, host: "0.0.0.0" }, () => handOver(v4));
});
dual.listen({ port, host: "::", ipv6Only: false }, () => handOver(dual));
