/**
 * A TCP relay to a URL's host and port (an etcd client URL) that a test can cut and heal: a
 * network partition of one client (its connections reset, new ones closed at once) while others
 * still reach the server.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export async function tcpRelay(
  to: string,
): Promise<{ endpoint: string; cut(): void; heal(): void; close(): Promise<void> }> {
  const target = new URL(to);
  const open = new Set<Socket>();
  let down = false;
  const srv: Server = createServer((c) => {
    if (down) return void c.destroy();
    const up = connect(Number(target.port), target.hostname);
    for (const s of [c, up]) {
      open.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        open.delete(s);
        c.destroy();
        up.destroy();
      });
    }
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const a = srv.address();
  const port = a !== null && typeof a === "object" ? a.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut: () => {
      down = true;
      for (const s of open) s.destroy();
    },
    heal: () => (down = false),
    close: () => {
      down = true;
      for (const s of open) s.destroy();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}
