/**
 * Child of peer-net.ts, started by `nsenter --net=<node netns>`: the node namespace's sockets of
 * the cross-node handshake. It listens on the handshake port and hands the listening socket to
 * the agent, then opens the agent's outgoing handshake connections from inside the namespace and
 * hands each connected socket over the IPC channel. It reads and writes no byte of them.
 *
 *   argv[2] = JSON {port}      -> {op: "listening"} + server handle | {op: "error", error}
 *   {op: "connect", id, host, port, timeoutMs} -> {op: "connected", id} + socket | {op: "failed", id, error}
 *
 * It exits when the agent goes (the IPC channel closes).
 */
import { connect, createServer, type Socket } from "node:net";

const cfg = JSON.parse(process.argv[2] ?? "{}") as { port?: unknown };
const port = cfg.port;
if (
  process.send === undefined ||
  typeof port !== "number" ||
  !Number.isInteger(port) ||
  port < 1 ||
  port > 65535
)
  process.exit(2);

const send = (m: Record<string, unknown>, handle?: Socket | ReturnType<typeof createServer>): void => {
  process.send?.(m, handle as never, (err: Error | null) => {
    if (err) process.exit(1);
  });
};

const server = createServer();
server.on("error", (e: NodeJS.ErrnoException) => {
  process.send?.({ op: "error", error: e.code ?? e.message }, () => process.exit(1));
});
server.listen({ port, host: "::", ipv6Only: false }, () => {
  // The agent accepts from now on; this process's copy is closed once handed over.
  process.send?.({ op: "listening" }, server, () => server.close());
});

process.on("message", (m: { op?: string; id?: number; host?: string; port?: number; timeoutMs?: number }) => {
  if (
    m.op !== "connect" ||
    typeof m.id !== "number" ||
    typeof m.host !== "string" ||
    typeof m.port !== "number"
  )
    return;
  const id = m.id;
  const s = connect({ host: m.host, port: m.port });
  const t = setTimeout(() => s.destroy(new Error(`no connection within ${m.timeoutMs ?? 5000} ms`)), m.timeoutMs ?? 5000); // prettier-ignore
  s.once("connect", () => {
    clearTimeout(t);
    s.pause();
    send({ op: "connected", id }, s);
  });
  s.once("error", (e: NodeJS.ErrnoException) => {
    clearTimeout(t);
    send({ op: "failed", id, error: e.code ?? e.message });
  });
});
process.on("disconnect", () => process.exit(0));
