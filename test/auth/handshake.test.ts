/**
 * The mutual-authentication handshake (src/auth/handshake.ts), real TLS 1.3 between two in-process
 * sides with SVIDs from real SPIFFE CAs: each side accepts only the identity it expects, from its
 * trust domain's bundle; every other presentation is refused with a message naming why.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { localHandshake, type TlsCreds } from "../../src/auth/handshake.js";
import { SvidProvider, type X509Svid } from "../../src/spiffe/provider.js";

const log = pino({ level: "silent" });
const creds = (s: X509Svid): TlsCreds => ({ chain: s.chain, key: () => s.privateKeyPkcs8() });

describe("mutual-authentication handshake", () => {
  test("accepts the expected pair; refuses another trust domain, another root of the same name, another identity", async () => {
    const a = await SvidProvider.start({ trustDomain: "a.test", logger: log, timers: false });
    const evil = await SvidProvider.start({ trustDomain: "evil.test", logger: log, timers: false });
    const twin = await SvidProvider.start({ trustDomain: "a.test", logger: log, timers: false }); // same name, other root
    try {
      const [c, s, third] = await Promise.all([a.ensure(300), a.ensure(301), a.ensure(302)]);
      const run = (
        client: X509Svid,
        server: X509Svid,
        expectClient = c.spiffeId,
        expectServer = s.spiffeId,
      ) =>
        localHandshake({
          client: { creds: creds(client), expectPeer: expectServer },
          server: { creds: creds(server), expectPeer: expectClient },
          bundle: a.bundle(),
          trustDomain: "a.test",
          timeoutMs: 20_000,
        });
      const ok = await run(c, s);
      assert.equal(ok.notAfter.getTime(), Math.min(c.notAfter.getTime(), s.notAfter.getTime()));

      const cases: { name: string; go: () => Promise<unknown>; why: RegExp }[] = [
        { name: "client SVID of another trust domain", go: async () => run(await evil.ensure(300), s), why: /client|certificate/i }, // prettier-ignore
        { name: "server SVID of another trust domain", go: async () => run(c, await evil.ensure(301)), why: /server|certificate/i }, // prettier-ignore
        { name: "client SVID of a root outside the bundle", go: async () => run(await twin.ensure(300), s), why: /client|certificate/i }, // prettier-ignore
        { name: "client presents another identity's valid SVID", go: () => run(third, s), why: /presented spiffe:\/\/a\.test\/identity\/302, not spiffe:\/\/a\.test\/identity\/300/ }, // prettier-ignore
        { name: "server presents another identity's valid SVID", go: () => run(c, third), why: /presented spiffe:\/\/a\.test\/identity\/302, not spiffe:\/\/a\.test\/identity\/301/ }, // prettier-ignore
      ];
      for (const k of cases) {
        await assert.rejects(k.go(), (e: Error & { code?: string }) => {
          assert.equal(e.code, "AUTH_HANDSHAKE_FAILED", k.name);
          assert.match(e.message, k.why, k.name);
          assert.ok(!e.message.includes("PRIVATE KEY"), k.name);
          return true;
        });
      }
    } finally {
      for (const p of [a, evil, twin]) p.stop();
    }
  });
});
