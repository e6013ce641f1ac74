/**
 * The cross-node handshake's wire (src/auth/peer-handshake.ts) over real TCP on loopback, with
 * SVIDs from real SPIFFE CAs: the responder presents the end the SNI names and accepts only the
 * other end's SVID from the bundle; hostile callers (a server name naming no pair, no client
 * certificate, another identity, another trust domain, bytes that are not TLS, a caller that sends
 * nothing) are refused and closed within the bound, and the server goes on answering.
 */
import assert from "node:assert/strict";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { describe, test } from "node:test";
import pino from "pino";
import { checkPeer } from "../../src/auth/handshake.js";
import { clientHandshake, ContextCache, parseSni, serverHandshake, sniOf, type PairRole } from "../../src/auth/peer-handshake.js"; // prettier-ignore
import { SvidProvider, type X509Svid } from "../../src/spiffe/provider.js";

const log = pino({ level: "silent" });

describe("cross-node handshake wire", () => {
  test("server names: only p<src>-<dst>-<s|d>.auth.membrane with identities in range", () => {
    assert.deepEqual(parseSni(sniOf({ src: 300, dst: 301, serverSide: "d" })), { src: 300, dst: 301, serverSide: "d" }); // prettier-ignore
    const bad = [undefined, "", "p300-301-d.auth.membrane.", "P300-301-d.auth.membrane", "p0-301-d.auth.membrane", "p300-301-x.auth.membrane", "p300-301-d.auth.membrane.evil", "p033554432-1-s.auth.membrane", "p99999999-1-s.auth.membrane", "p300-301-d\u0000.auth.membrane", "p1-2-s.auth.membrane".repeat(50), "x.p1-2-s.auth.membrane"]; // prettier-ignore
    for (const b of bad) assert.equal(parseSni(b), undefined, JSON.stringify(b));
  });

  test("over TCP: accepted with the right SVIDs; refused and closed for every hostile caller; still serving after", async () => {
    const a = await SvidProvider.start({ trustDomain: "a.test", logger: log, timers: false });
    const evil = await SvidProvider.start({ trustDomain: "evil.test", logger: log, timers: false });
    const cache = new ContextCache();
    const ctx = (s: X509Svid, p = a) => cache.get(s.serial, { chain: s.chain, key: () => s.privateKeyPkcs8() }, p.bundle(), p.bundleRevision); // prettier-ignore
    const refusals: string[] = [];
    const accepted: PairRole[] = [];
    let server: Server | undefined;
    try {
      const [c, s, third] = await Promise.all([a.ensure(300), a.ensure(301), a.ensure(302)]);
      server = createServer((sock) =>
        serverHandshake({
          socket: sock,
          timeoutMs: 1500,
          contextFor: async (r) => {
            const mine = r.serverSide === "s" ? r.src : r.dst;
            if (mine !== 301) throw new Error(`identity ${mine} has no endpoint here`);
            return ctx(s);
          },
          accept: async (r, peer) => {
            checkPeer(peer, c.spiffeId, a.bundle(), "a.test", Date.now(), "client node");
            accepted.push(r);
          },
          onRefused: (why) => refusals.push(why),
        }),
      );
      await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
      const port = (server.address() as AddressInfo).port;
      const sock = (): Promise<Socket> =>
        new Promise((ok, no) => {
          const k = connect(port, "127.0.0.1", () => ok(k));
          k.once("error", no);
        });
      const shake = async (client: X509Svid, role: PairRole, expect = s.spiffeId, p = a) =>
        clientHandshake({ socket: await sock(), role, context: ctx(client, p), expectPeer: expect, bundle: a.bundle(), trustDomain: "a.test", timeoutMs: 5000 }); // prettier-ignore
      const role: PairRole = { src: 300, dst: 301, serverSide: "d" };

      const ok = await shake(c, role);
      assert.equal(accepted.length, 1);
      assert.ok(ok.chain.length >= 1);
      assert.equal(ok.notAfter.getTime(), s.notAfter.getTime());

      const cases: { name: string; go: () => Promise<unknown> }[] = [
        { name: "the client presents another identity's SVID", go: () => shake(third, role) },
        { name: "the client's SVID is of another trust domain", go: async () => shake(await evil.ensure(300), role, s.spiffeId, evil) }, // prettier-ignore
        { name: "the server name asks for an end this node does not hold", go: () => shake(c, { src: 300, dst: 305, serverSide: "d" }) }, // prettier-ignore
        {
          name: "the client expects another identity of the server",
          go: () => shake(c, role, third.spiffeId),
        },
      ];
      for (const k of cases)
        await assert.rejects(k.go(), (e: Error & { code?: string }) => {
          assert.equal(e.code, "AUTH_HANDSHAKE_FAILED", k.name);
          assert.ok(!/PRIVATE KEY/.test(e.message), k.name);
          return true;
        });
      assert.equal(accepted.length, 1, "no hostile caller was accepted");

      // Not TLS at all, and a caller that sends nothing: closed (the second within the bound).
      const closed = (k: Socket): Promise<void> => new Promise((r) => k.once("close", () => r()));
      const junk = await sock();
      junk.on("error", () => undefined);
      const junkClosed = closed(junk);
      junk.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n\u0016\u0003\u0001\u00ff\u00ff"));
      await junkClosed;
      const idle = await sock();
      idle.on("error", () => undefined);
      await closed(idle);
      assert.ok(
        refusals.some((r) => /bound/.test(r)),
        refusals.join("; "),
      );
      assert.ok(refusals.every((r) => !/PRIVATE KEY/.test(r)));

      // The server still answers a legitimate caller.
      await shake(c, role);
      assert.equal(accepted.length, 2);
    } finally {
      server?.close();
      a.stop();
      evil.stop();
    }
  });
});
