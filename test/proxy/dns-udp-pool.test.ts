import { describe, test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { TimeoutQueue } from "../../src/proxy/deadlines.js";
import { UdpUpstreamPool } from "../../src/proxy/dns/udp-pool.js";
import { IO_PATHS, query } from "./dns-harness.js";

interface Seen {
  readonly id: number;
  readonly port: number;
}

/** A real UDP resolver on 127.0.0.1: records each query's id and source port; `answer` decides what goes back. */
async function resolver(
  answer: (q: Buffer, reply: (b: Buffer) => void) => void = (q, reply) => reply(echo(q)),
): Promise<{ port: number; seen: Seen[]; sock: dgram.Socket; close(): Promise<void> }> {
  const sock = dgram.createSocket("udp4");
  const seen: Seen[] = [];
  sock.on("message", (q, rinfo) => {
    seen.push({ id: q.readUInt16BE(0), port: rinfo.port });
    answer(q, (b) => sock.send(b, rinfo.port, rinfo.address));
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  return { port: sock.address().port, seen, sock, close: () => new Promise((r) => sock.close(() => r())) };
}

/** The query back with QR set: enough of an answer for the pool (it matches ids, not content). */
function echo(q: Buffer): Buffer {
  const b = Buffer.from(q);
  b.writeUInt16BE(q.readUInt16BE(2) | 0x8000, 2);
  return b;
}

function ask(pool: UdpUpstreamPool, port: number, id: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    pool.exchange({ host: "127.0.0.1", port }, query("a.example.com", { id }), id, (e, a) =>
      e ? reject(e) : resolve(a as Buffer),
    ),
  );
}

for (const io of IO_PATHS) {
  describe(`DNS upstream pool (real UDP sockets, ${io})`, () => {
    test("each query leaves with a fresh random id; the answer comes back with the client's id", async () => {
      const r = await resolver();
      const pool = new UdpUpstreamPool({ io, timeoutMs: 2000 });
      try {
        const answers = await Promise.all([1, 1, 2, 3].map((id) => ask(pool, r.port, id)));
        assert.deepEqual(
          answers.map((a) => a.readUInt16BE(0)),
          [1, 1, 2, 3],
        );
        // Two clients both using id 1 never share a wire id (an answer cannot go to the wrong one).
        assert.equal(new Set(r.seen.map((s) => s.id)).size, 4);
        assert.ok(!r.seen.every((s) => s.id <= 3), "wire ids are random, not the clients'");
        assert.equal(new Set(r.seen.map((s) => s.port)).size, 1, "one socket carried them");
      } finally {
        pool.close();
        await r.close();
      }
    });

    test("the client's query buffer is never written: the wire id goes out in the copy sent", async () => {
      const r = await resolver();
      const pool = new UdpUpstreamPool({ io, timeoutMs: 2000 });
      try {
        const q = query("a.example.com", { id: 7 });
        const before = Buffer.from(q);
        const wire: Buffer[] = [];
        r.sock.on("message", (m) => wire.push(m));
        const a = await new Promise<Buffer>((res, rej) =>
          pool.exchange({ host: "127.0.0.1", port: r.port }, q, 7, (e, b) => (e ? rej(e) : res(b as Buffer))),
        );
        assert.deepEqual(q, before, "the client's bytes, id 7 included, as they came");
        assert.equal(wire.length, 1);
        assert.notEqual(wire[0]?.readUInt16BE(0), 7, "the resolver saw the wire id");
        assert.deepEqual(wire[0]?.subarray(2), q.subarray(2), "and otherwise the client's bytes");
        assert.equal(a.readUInt16BE(0), 7, "the answer carries the client's id again");
      } finally {
        pool.close();
        await r.close();
      }
    });

    test("a socket carries queriesPerSocket queries, then a new source port takes over; the old one closes", async () => {
      const r = await resolver();
      const pool = new UdpUpstreamPool({ io, timeoutMs: 2000, queriesPerSocket: 3, maxIdleSockets: 1 });
      try {
        for (let i = 0; i < 7; i++) await ask(pool, r.port, i);
        const ports = r.seen.map((s) => s.port);
        assert.equal(new Set(ports.slice(0, 3)).size, 1);
        assert.equal(new Set(ports.slice(3, 6)).size, 1);
        assert.notEqual(ports[0], ports[3]);
        assert.notEqual(ports[3], ports[6]);
        assert.equal(pool.sockets.size, 1, "retired sockets are closed once their answers are in");
      } finally {
        pool.close();
        await r.close();
      }
    });

    test("answers with an unknown id, without QR, or late are ignored; silence times out", async () => {
      const r = await resolver((q, reply) => {
        const wrong = echo(q);
        wrong.writeUInt16BE((q.readUInt16BE(0) + 1) & 0xffff, 0);
        reply(wrong); // another id: must not settle this query
        reply(Buffer.from(q)); // the right id but not a response
      });
      const pool = new UdpUpstreamPool({ io, timeoutMs: 150 });
      try {
        await assert.rejects(ask(pool, r.port, 9), /upstream timed out/);
        assert.equal(pool.sockets.size, 1, "a current socket stays open for the next query");
      } finally {
        pool.close();
        await r.close();
      }
    });

    test("a forged answer from another address never reaches the socket (it is connected)", async () => {
      const r = await resolver(() => undefined);
      const forger = dgram.createSocket("udp4");
      await new Promise<void>((res) => forger.bind(0, "127.0.0.1", res));
      const pool = new UdpUpstreamPool({ io, timeoutMs: 300 });
      try {
        const p = ask(pool, r.port, 5);
        while (r.seen.length === 0) await new Promise((res) => setTimeout(res, 5));
        const { id, port } = r.seen[0] as Seen;
        const forged = echo(query("a.example.com", { id }));
        await new Promise((res) => forger.send(forged, port, "127.0.0.1", res));
        await assert.rejects(p, /upstream timed out/);
      } finally {
        pool.close();
        forger.close();
        await r.close();
      }
    });

    test("close() fails what is outstanding and later queries at once", async () => {
      const r = await resolver(() => undefined);
      const pool = new UdpUpstreamPool({ io, timeoutMs: 5000 });
      const p = ask(pool, r.port, 1);
      pool.close();
      await assert.rejects(p, /stopping/);
      await assert.rejects(ask(pool, r.port, 2), /stopping/);
      assert.equal(pool.sockets.size, 0);
      await r.close();
    });
  });
}

describe("TimeoutQueue: many deadlines on one timer", () => {
  test("fires each live entry once, not before its time, in order; cancelled ones never", async () => {
    const q = new TimeoutQueue(60);
    const fired: number[] = [];
    const t0 = performance.now();
    const at: number[] = [];
    const entries = Array.from({ length: 50 }, (_, i) =>
      q.add(() => {
        fired.push(i);
        at.push(performance.now() - t0);
      }),
    );
    for (let i = 0; i < 50; i += 2) entries[i]?.cancel();
    entries[1]?.cancel();
    entries[1]?.cancel(); // idempotent
    assert.equal(q.pending, 24);
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(
      fired,
      Array.from({ length: 24 }, (_, k) => 2 * k + 3),
    );
    assert.ok(
      at.every((ms) => ms >= 59),
      `none early: ${Math.min(...at)}`,
    );
    assert.equal(q.pending, 0);
    q.stop();
  });

  test("a throwing callback is reported and the others still fire; stop() drops the rest", async () => {
    const errors: unknown[] = [];
    const q = new TimeoutQueue(10, (e) => errors.push(e));
    let ran = 0;
    q.add(() => {
      throw new Error("boom");
    });
    q.add(() => ran++);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(ran, 1);
    assert.equal(errors.length, 1);
    q.add(() => ran++);
    q.stop();
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(ran, 1);
    assert.throws(() => new TimeoutQueue(Number.NaN), /finite/);
  });
});
