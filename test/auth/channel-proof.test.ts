/**
 * The responder of a pooled connection (src/auth/channel-server.ts) over real TCP + TLS 1.3 on
 * loopback, with node certificates and SVIDs from a real SPIFFE CA, and a stand-in for the auth
 * manager (the node registry and policy answers: "mock manager" in the test names): what protocol
 * v2 (pair-proof.ts, ALPN) allows and refuses. A request without a signature is answered only for
 * a leaf whose key was proven on that connection; the answer is signed only the first time it
 * presents its leaf; a v1 client (no ALPN) gets every answer signed and may never leave one out.
 */
import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import * as tls from "node:tls";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { CHANNEL_SNI } from "../../src/auth/channel.js";
import { serveChannel, type ChannelServerStats } from "../../src/auth/channel-server.js";
import { encodeFrame, FrameReader, parseAnswer, type PairAnswer, type PairRequest } from "../../src/auth/channel-wire.js"; // prettier-ignore
import type { AuthManager } from "../../src/auth/manager.js";
import { NodeCredential } from "../../src/auth/node-cert.js";
import { CHANNEL_ALPN, exporterOf, signRequest, SigningKeys, verifyResponse } from "../../src/auth/pair-proof.js"; // prettier-ignore
import { serverHandshake } from "../../src/auth/peer-handshake.js";
import { SvidProvider, type X509Svid } from "../../src/spiffe/provider.js";
import { SvidValidationCache } from "../../src/spiffe/validate-cache.js";

const log = pino({ level: "silent" });

describe("pooled connection proofs, protocol v2 (TLS on loopback, mock manager)", () => {
  let a: SvidProvider;
  let server: Server | undefined;
  let port = 0;
  const stats: ChannelServerStats = { channels: 0, requests: 0, unsigned: 0, accepted: 0, refused: 0 };
  const keys = new SigningKeys();
  let n1: NodeCredential;

  before(async () => {
    a = await SvidProvider.start({ trustDomain: "a.test", logger: log, timers: false });
    n1 = new NodeCredential(a, "n1");
    const n2 = new NodeCredential(a, "n2");
    // The manager's answers the responder asks for: n1 at 127.0.0.1, its roots, the policy (none).
    const m = {
      nodes: { self: "n2", nodeAt: () => "n1", rootsOf: () => a.bundle(), netsOf: () => [] },
      verified: new SvidValidationCache(),
      keys,
      p: { provider: a, logger: log, state: () => undefined },
      checkIdentity: () => undefined,
    } as unknown as AuthManager;
    server = createServer((sock) =>
      serverHandshake({
        socket: sock,
        timeoutMs: 3000,
        channel: {
          sni: CHANNEL_SNI,
          context: async () => (await n2.context()).ctx,
          onSecure: (s) => serveChannel(m, s, "n1", "127.0.0.1", stats),
        },
        contextFor: () => Promise.reject(new Error("no per-pair handshakes here")),
        accept: () => Promise.reject(new Error("no per-pair handshakes here")),
        onRefused: () => undefined,
      }),
    );
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server?.close());

  /** A pooled connection as node n1; `ask` sends one request and resolves with its answer or "closed". */
  async function open(alpn: boolean) {
    const ctx = (await n1.context()).ctx;
    const s = tls.connect({ socket: connect(port, "127.0.0.1"), secureContext: ctx, servername: CHANNEL_SNI, ...(alpn ? { ALPNProtocols: [CHANNEL_ALPN] } : {}), rejectUnauthorized: true, checkServerIdentity: () => undefined }); // prettier-ignore
    await new Promise<void>((ok, no) => {
      s.once("secureConnect", ok);
      s.once("error", no);
    });
    const exporter = exporterOf(s);
    const reader = new FrameReader();
    const waiting: ((a: PairAnswer | "closed") => void)[] = [];
    s.on("data", (d: Buffer) => {
      for (const b of reader.push(d)) waiting.shift()?.(parseAnswer(b));
    });
    s.on("error", () => undefined);
    s.on("close", () => {
      for (const w of waiting.splice(0)) w("closed");
    });
    let id = 0;
    const ask = (svid: X509Svid, signed: boolean) => {
      const claim = { id: ++id, src: svid.identity, dst: 301, side: "d" as const, nonce: randomBytes(32).toString("base64") }; // prettier-ignore
      const sig = signed ? signRequest(keys.get(svid.serial, () => svid.privateKeyPkcs8()), exporter, claim) : undefined; // prettier-ignore
      const req: PairRequest = { t: "pair", ...claim, chain: [...svid.chain], ...(sig ? { sig } : {}) };
      return new Promise<{ a: PairAnswer | "closed"; claim: typeof claim; sig: Buffer | undefined }>((ok) => {
        waiting.push((ans) => ok({ a: ans, claim, sig }));
        if (!s.destroyed) s.write(encodeFrame(req));
      });
    };
    return { s, ask, exporter, protocol: s.alpnProtocol };
  }

  const pub = (chain: readonly Buffer[]) => new X509Certificate(chain[0] as Buffer).publicKey;

  test("v2: a leaf proven once is accepted unsigned; the answer is signed only the first time", async () => {
    const c = await open(true);
    try {
      assert.equal(c.protocol, CHANNEL_ALPN);
      const client = await a.ensure(300);
      const r1 = await c.ask(client, true);
      assert.ok(r1.a !== "closed" && r1.a.t === "ok", JSON.stringify(r1.a));
      const ok1 = r1.a as Extract<PairAnswer, { t: "ok" }>;
      assert.ok(ok1.sig, "the first answer presenting the leaf carries its proof");
      verifyResponse(pub(ok1.chain), c.exporter, r1.claim, r1.sig, ok1.sig);
      const u0 = stats.unsigned;
      const r2 = await c.ask(client, false);
      assert.ok(r2.a !== "closed" && r2.a.t === "ok", "an unsigned request for a proven leaf is answered");
      assert.equal((r2.a as { sig?: Buffer }).sig, undefined, "the answer's leaf was proven: no signature");
      assert.equal(stats.unsigned, u0 + 1);
    } finally {
      c.s.destroy();
    }
  });

  test("v2: an unsigned request for a leaf never proven on this connection ends it", async () => {
    const c = await open(true);
    try {
      const [proven, other] = [await a.ensure(300), await a.ensure(302)];
      assert.notEqual((await c.ask(proven, true)).a, "closed");
      assert.equal((await c.ask(other, false)).a, "closed", "another leaf, never signed for");
    } finally {
      c.s.destroy();
    }
    const d = await open(true);
    try {
      // A proof made on another connection counts for nothing here (the exporter binds it).
      assert.equal((await d.ask(await a.ensure(300), false)).a, "closed");
    } finally {
      d.s.destroy();
    }
  });

  test("v1 (no ALPN): every answer signed, and an unsigned request ends the connection", async () => {
    const c = await open(false);
    try {
      assert.equal(c.protocol, false);
      const client = await a.ensure(300);
      for (let i = 0; i < 2; i++) {
        const r = await c.ask(client, true);
        const ok = r.a as Extract<PairAnswer, { t: "ok" }>;
        assert.equal(ok.t, "ok");
        assert.ok(ok.sig, `answer ${i + 1} is signed`);
        verifyResponse(pub(ok.chain), c.exporter, r.claim, r.sig, ok.sig);
      }
      assert.equal((await c.ask(client, false)).a, "closed");
    } finally {
      c.s.destroy();
    }
  });
});
