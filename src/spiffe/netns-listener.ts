/**
 * Child of endpoint-socket.ts, started by `nsenter --net=<endpoint netns>`: listens on the
 * Workload API's abstract unix socket inside that network namespace, hands the listening socket
 * to the agent over the IPC channel, and exits. Nothing else runs here.
 */
import { createServer } from "node:net";

const name = process.argv[2];
if (process.send === undefined || name === undefined || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) process.exit(2);
const server = createServer();
server.on("error", (e: NodeJS.ErrnoException) => {
  process.send?.({ error: e.code ?? e.message }, () => process.exit(1));
});
server.listen({ path: `\0${name}` }, () => {
  process.send?.({ ok: true }, server, () => process.exit(0));
});
