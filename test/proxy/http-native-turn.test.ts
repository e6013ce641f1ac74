/**
 * The native socket I/O's loop turns (native/membrane-proxy-io.c, src/proxy/http/native-io.ts),
 * on real loopback sockets: the events of one turn are handled together, before any of their
 * microtasks; the writes of a turn go out at its end in order, before a destroy or a FIN asked
 * for in the same turn; and a peer that stops reading still stops the writer (write answers
 * false), with every byte arriving in order once it reads again.
 */
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { ByteConn, ConnEvents } from "../../src/proxy/http/conn.js";
import { nativeClient, proxyIo, type ProxyIoAddon } from "../../src/proxy/http/native-io.js";

interface Pair {
  /** The accepted end, read and written through the add-on. */
  readonly conn: ByteConn;
  /** The test's end, a plain net.Socket. */
  readonly peer: net.Socket;
  /** What the native end's events said, in order. */
  readonly log: string[];
  /** Everything the peer received, and whether its FIN came. */
  readonly got: { bytes: Buffer[]; ended: boolean };
}

/** A connected pair on loopback; `onData` sees the native end's data events. */
async function pair(io: ProxyIoAddon, onData: (d: Buffer) => void = () => undefined): Promise<Pair> {
  const log: string[] = [];
  const got = { bytes: [] as Buffer[], ended: false };
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  const peer = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  peer.on("data", (d: Buffer) => got.bytes.push(d));
  peer.on("end", () => (got.ended = true));
  peer.on("error", () => undefined);
  const sock = await accepted;
  server.close();
  const ev: ConnEvents = {
    data: onData,
    end: () => log.push("end"),
    gone: () => log.push("gone"),
  };
  const taken = nativeClient(sock, ev, io);
  if (!taken) throw new Error("the accepted socket was not taken by the add-on");
  return { conn: taken.conn, peer, log, got };
}

/** Waits for `cond` (checked every 5 ms), failing after `ms`: a condition, not a sleep. */
async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));
const text = (p: Pair): string => Buffer.concat(p.got.bytes).toString("latin1");

describe(
  "HTTP proxy: native I/O, one loop turn at a time",
  { skip: proxyIo() ? false : "dist/bin/membrane-proxy-io.node not built" },
  () => {
    const io = proxyIo() as ProxyIoAddon;

    test("the events of one turn are all handled before the microtasks any of them queued", async () => {
      const shared: string[] = [];
      const onData = (name: string) => (): void => {
        shared.push(name);
        queueMicrotask(() => shared.push(`${name}'s microtask`));
      };
      const a = await pair(io, onData("a"));
      const b = await pair(io, onData("b"));
      try {
        // Both writes land in the receivers' queues now (loopback, written synchronously), so the
        // loop's next poll finds both sockets readable at once: one turn.
        a.peer.write("x");
        b.peer.write("y");
        await waitFor(() => shared.length >= 4, "both data events and both microtasks");
        const data = shared.filter((x) => !x.includes("microtask"));
        assert.equal(data.length, 2, JSON.stringify(shared));
        assert.deepEqual(
          shared.slice(0, 2).sort(),
          ["a", "b"],
          `a microtask ran between two events of one turn: ${JSON.stringify(shared)}`,
        );
      } finally {
        a.peer.destroy();
        b.peer.destroy();
        a.conn.destroy();
        b.conn.destroy();
      }
    });

    test("a turn's writes arrive in order, and before a destroy asked for in the same turn", async () => {
      const p = await pair(io);
      try {
        assert.equal(p.conn.write(Buffer.from("one ")), true);
        assert.equal(p.conn.write(Buffer.from("two ")), true);
        assert.equal(p.conn.write(Buffer.from("three")), true);
        p.conn.destroy();
        await waitFor(() => p.peer.readableEnded || p.peer.destroyed, "the peer to see the close");
        assert.equal(text(p), "one two three");
      } finally {
        p.peer.destroy();
      }
    });

    test("our FIN asked for in the same turn as the writes comes after them", async () => {
      const p = await pair(io);
      try {
        p.conn.write(Buffer.from("head "));
        p.conn.write(Buffer.from("body"));
        p.conn.endAndLinger(5000);
        await waitFor(() => p.got.ended, "the peer to receive our FIN");
        assert.equal(text(p), "head body");
        p.peer.end();
        await waitFor(() => p.log.includes("gone"), "the native end to close after both FINs");
      } finally {
        p.peer.destroy();
      }
    });

    test("a peer that stops reading stops the writer; every byte arrives in order once it reads again", async () => {
      const p = await pair(io);
      const hash = createHash("sha256");
      const sent = createHash("sha256");
      try {
        p.peer.pause();
        const chunk = 64 * 1024;
        const cap = 256 * 1024 * 1024;
        let written = 0;
        let accepted = true;
        // One write per turn, as the proxy writes one read's bytes per turn.
        for (let i = 0; accepted; i++) {
          if (written >= cap)
            assert.fail(`write never answered false: ${written} bytes to a peer that does not read`);
          const b = Buffer.alloc(chunk, i % 251);
          sent.update(b);
          written += chunk;
          accepted = p.conn.write(b);
          await nextTurn();
        }
        const drained = new Promise<void>((r) => p.conn.onceDrain(r));
        let received = 0;
        p.peer.removeAllListeners("data");
        p.peer.on("data", (d: Buffer) => {
          hash.update(d);
          received += d.length;
        });
        p.peer.resume();
        await drained;
        await waitFor(() => received === written, `all ${written} bytes at the peer (${received} so far)`);
        assert.equal(hash.digest("hex"), sent.digest("hex"));
      } finally {
        p.peer.destroy();
        p.conn.destroy();
      }
    });
  },
);
