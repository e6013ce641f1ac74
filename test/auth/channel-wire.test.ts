// The pooled connection's messages (auth/channel-wire.ts) as hostile input, and the per-pair proof
// (auth/pair-proof.ts): a proof verifies only on the connection (exporter), claim and key it was
// made for.
import assert from "node:assert/strict";
import { randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { describe, test } from "node:test";
import {
  encodeFrame,
  FrameReader,
  MAX_FRAME,
  parseAnswer,
  parseRequest,
  type PairRequest,
} from "../../src/auth/channel-wire.js";
import { MAX_PROVEN, Possession, signRequest, signResponse, SigningKeys, verifyRequest, verifyResponse } from "../../src/auth/pair-proof.js"; // prettier-ignore
import { SpiffeCa } from "../../src/spiffe/ca.js";
import { exportPkcs8, newKeyPair } from "../../src/spiffe/certs.js";

const nonce = Buffer.alloc(32, 7).toString("base64");
const req: PairRequest = { t: "pair", id: 1, src: 300, dst: 301, side: "d", nonce, chain: [Buffer.from("leaf")], sig: Buffer.from("sig") }; // prettier-ignore
const body = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));
const plain = { t: "pair", id: 1, src: 300, dst: 301, side: "d", nonce, chain: ["bGVhZg=="], sig: "c2ln" };

describe("pooled connection messages (hostile input)", () => {
  test("a request and an answer without a signature (protocol v2) parse without one", () => {
    const { sig: _sig, ...unsigned } = req;
    const r = parseRequest(new FrameReader().push(encodeFrame(unsigned))[0] as Buffer);
    assert.deepEqual(r, unsigned);
    assert.equal("sig" in r, false);
    const a = parseAnswer(body({ t: "ok", id: 3, chain: ["bGVhZg=="] }));
    assert.deepEqual(a, { t: "ok", id: 3, chain: [Buffer.from("leaf")] });
  });

  test("a request and both answers survive encoding, split across chunks at every byte", () => {
    const all = Buffer.concat([
      encodeFrame(req),
      encodeFrame({ t: "ok", id: 1, chain: [Buffer.from("c")], sig: Buffer.from("s") }),
      encodeFrame({ t: "no", id: 2, why: "identity 301 is revoked" }),
    ]);
    const r = new FrameReader();
    const bodies = [...all].flatMap((byte) => r.push(Buffer.from([byte])));
    assert.equal(bodies.length, 3);
    assert.deepEqual(parseRequest(bodies[0] as Buffer), req);
    assert.deepEqual(parseAnswer(bodies[1] as Buffer), { t: "ok", id: 1, chain: [Buffer.from("c")], sig: Buffer.from("s") }); // prettier-ignore
    assert.deepEqual(parseAnswer(bodies[2] as Buffer), { t: "no", id: 2, why: "identity 301 is revoked" });
  });

  const badFrames: { name: string; bytes: Buffer; why: RegExp }[] = [
    { name: "a length over the bound", bytes: Buffer.from([0x7f, 0xff, 0xff, 0xff]), why: /frame of 2147483647 bytes/ }, // prettier-ignore
    { name: "a zero length", bytes: Buffer.from([0, 0, 0, 0]), why: /frame of 0 bytes/ },
    { name: "one byte over MAX_FRAME", bytes: (() => { const h = Buffer.alloc(4); h.writeUInt32BE(MAX_FRAME + 1); return h; })(), why: /frame of 65537/ }, // prettier-ignore
  ];
  for (const c of badFrames)
    test(`a frame with ${c.name} is refused before it is buffered`, () => {
      assert.throws(() => new FrameReader().push(c.bytes), c.why);
    });

  const badRequests: { name: string; o: unknown; why: RegExp }[] = [
    { name: "not JSON", o: undefined, why: /not JSON/ },
    { name: "an array", o: [1], why: /not a JSON object/ },
    { name: "another type", o: { ...plain, t: "ok" }, why: /not a pair request/ },
    { name: "an unknown field", o: { ...plain, admin: true }, why: /unknown field "admin"/ },
    { name: "id 0", o: { ...plain, id: 0 }, why: /id is not a whole number/ },
    { name: "a fractional id", o: { ...plain, id: 1.5 }, why: /id is not a whole number/ },
    { name: "an identity over 2^25", o: { ...plain, src: 0x02000000 }, why: /src is not a whole number/ },
    { name: "an identity as a string", o: { ...plain, dst: "301" }, why: /dst is not a whole number/ },
    { name: "a side other than s/d", o: { ...plain, side: "x" }, why: /side is not/ },
    {
      name: "a short nonce",
      o: { ...plain, nonce: Buffer.alloc(8).toString("base64") },
      why: /nonce is shorter/,
    },
    { name: "a nonce that is not base64", o: { ...plain, nonce: "!!!!" }, why: /nonce is not base64/ },
    { name: "an empty chain", o: { ...plain, chain: [] }, why: /chain is not a list/ },
    {
      name: "nine certificates",
      o: { ...plain, chain: Array(9).fill("bGVhZg==") },
      why: /chain is not a list/,
    },
    { name: "a certificate over 16 KiB", o: { ...plain, chain: [Buffer.alloc(16 * 1024 + 3).toString("base64")] }, why: /chain\[0\] is empty or over/ }, // prettier-ignore
    { name: "a chain entry not a string", o: { ...plain, chain: [{}] }, why: /chain\[0\] is not base64/ },
    { name: "a signature that is not base64", o: { ...plain, sig: "!!!" }, why: /sig is not base64/ },
    { name: "an empty signature", o: { ...plain, sig: "" }, why: /sig is not base64/ },
  ];
  for (const c of badRequests)
    test(`a request with ${c.name} is refused naming it`, () => {
      const b = c.o === undefined ? Buffer.from("{nope") : body(c.o);
      assert.throws(() => parseRequest(b), (e: Error & { code?: string }) => e.code === "AUTH_HANDSHAKE_FAILED" && c.why.test(e.message)); // prettier-ignore
    });

  test("answers: unknown types and fields refused; a long reason cut to 300 characters", () => {
    assert.throws(() => parseAnswer(body({ t: "maybe", id: 1 })), /not an answer/);
    assert.throws(() => parseAnswer(body({ t: "ok", id: 1, chain: ["YQ=="], sig: "YQ==", extra: 1 })), /unknown field/); // prettier-ignore
    assert.throws(() => parseAnswer(body({ t: "no", id: -1, why: "x" })), /id is not a whole number/);
    const a = parseAnswer(body({ t: "no", id: 1, why: "x".repeat(5000) }));
    assert.equal(a.t === "no" && a.why.length, 300);
  });
});

describe("the per-pair proof", () => {
  test("verifies only with the key, connection, claim and request it was made for", async () => {
    const ca = await SpiffeCa.open({ trustDomain: "proof.test" });
    const svid = async (
      id: number,
    ): Promise<{ leaf: Buffer; pub: KeyObject; key: () => Buffer; serial: string }> => {
      const k = await newKeyPair();
      const { chain, leaf } = await ca.sign(`spiffe://proof.test/identity/${id}`, k.publicKey);
      const der = await exportPkcs8(k.privateKey);
      return { leaf: chain[0] as Buffer, pub: new X509Certificate(chain[0] as Buffer).publicKey, key: () => der, serial: leaf.serialNumber }; // prettier-ignore
    };
    const [a, b] = [await svid(300), await svid(301)];
    const keys = new SigningKeys();
    const exporter = randomBytes(32);
    const claim = { id: 1, src: 300, dst: 301, side: "d" as const, nonce };
    const sig = signRequest(keys.get(a.serial, a.key), exporter, claim);
    verifyRequest(a.pub, exporter, claim, sig);
    const no = /proof of its SVID key does not verify/;
    assert.throws(() => verifyRequest(b.pub, exporter, claim, sig), no, "another identity's certificate");
    assert.throws(() => verifyRequest(a.pub, randomBytes(32), claim, sig), no, "replayed on another connection"); // prettier-ignore
    assert.throws(() => verifyRequest(a.pub, exporter, { ...claim, id: 2 }, sig), no, "another request id");
    assert.throws(() => verifyRequest(a.pub, exporter, { ...claim, dst: 302 }, sig), no, "another pair");
    assert.throws(() => verifyRequest(a.pub, exporter, { ...claim, side: "s" }, sig), no, "the other end");
    assert.throws(() => verifyRequest(a.pub, exporter, claim, Buffer.from("garbage")), no);
    const rsig = signResponse(keys.get(b.serial, b.key), exporter, claim, sig);
    verifyResponse(b.pub, exporter, claim, sig, rsig);
    assert.throws(() => verifyResponse(b.pub, exporter, claim, Buffer.from("other request"), rsig), no, "bound to the request"); // prettier-ignore
    assert.throws(() => verifyResponse(a.pub, exporter, claim, sig, rsig), no);
    assert.throws(() => verifyRequest(a.pub, exporter, claim, rsig), no, "a response is not a request");
    assert.ok(new X509Certificate(a.leaf).publicKey);
  });

  test("an answer to an unsigned request (v2) is bound to that: it verifies only as such", async () => {
    const ca = await SpiffeCa.open({ trustDomain: "proof.test" });
    const k = await newKeyPair();
    const { chain, leaf } = await ca.sign("spiffe://proof.test/identity/301", k.publicKey);
    const der = await exportPkcs8(k.privateKey);
    const key = new SigningKeys().get(leaf.serialNumber, () => der);
    const pub = new X509Certificate(chain[0] as Buffer).publicKey;
    const exporter = randomBytes(32);
    const claim = { id: 7, src: 300, dst: 301, side: "d" as const, nonce };
    const rsig = signResponse(key, exporter, claim, undefined);
    verifyResponse(pub, exporter, claim, undefined, rsig);
    const no = /proof of its SVID key does not verify/;
    assert.throws(() => verifyResponse(pub, exporter, claim, Buffer.from("a request signature"), rsig), no);
    assert.throws(() => verifyResponse(pub, exporter, { ...claim, id: 8 }, undefined, rsig), no, "another request"); // prettier-ignore
    assert.throws(
      () => verifyResponse(pub, randomBytes(32), claim, undefined, rsig),
      no,
      "another connection",
    );
  });

  test("proven leaves are remembered by their exact bytes, and no more than MAX_PROVEN", () => {
    const p = new Possession();
    const leaf = randomBytes(500);
    assert.equal(p.has(leaf), false);
    assert.equal(p.add(leaf), true);
    assert.equal(p.has(Buffer.from(leaf)), true, "the same bytes");
    const other = Buffer.from(leaf);
    other[499] = (other[499] ?? 0) ^ 1;
    assert.equal(p.has(other), false, "one bit differs");
    for (let i = p.size; i < MAX_PROVEN; i++) p.add(randomBytes(8));
    assert.equal(p.add(other), false, "past the bound nothing is remembered: that side signs again");
    assert.equal(p.has(other), false);
  });
});
