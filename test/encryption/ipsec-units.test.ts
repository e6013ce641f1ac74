// The pure parts of IPsec encryption (no root): the VICI codec against hostile bytes, list-sas
// reading, connections from a node snapshot, the node key and its record field read as untrusted
// input, charon's configuration, and the flags.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decodeMessage, decodePacket, encodePacket, PacketSplitter, PacketType, ViciWireError } from "../../src/encryption/ipsec/vici-wire.js"; // prettier-ignore
import { connMessage, desiredIpsecPeers, isUp, parseListSas } from "../../src/encryption/ipsec/conns.js";
import { commitNextIpsecKey, discardNextIpsecKey, isIpsecPublicKey, loadOrCreateIpsecKey, prepareNextIpsecKey } from "../../src/encryption/ipsec/node-key.js"; // prettier-ignore
import { viciKeyIds } from "../../src/encryption/ipsec/rekey-auth.js";
import { charonRunDir, strongswanConf } from "../../src/encryption/ipsec/charon.js";
import { parseEncryptionFlags } from "../../src/encryption/options.js";
import { parseNodeRecord } from "../../src/cluster/node-record.js";
import { parsePrefix, type Prefix } from "../../src/labels/cidr.js";
import type { NodeSnapshot } from "../../src/cluster/node-view.js";
import { isMembraneError } from "../../src/errors.js";

const spki = (): string =>
  generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({ format: "der", type: "spki" }).toString("base64"); // prettier-ignore

describe("VICI wire format", () => {
  test("a request with sections, lists and values round-trips", () => {
    const message = { a: "1", conn: { local_addrs: ["10.0.0.1"], child: { mode: "tunnel" } }, empty: [] };
    const wire = encodePacket({ type: PacketType.CMD_REQUEST, name: "load-conn", message });
    assert.equal(wire.readUInt32BE(0), wire.length - 4);
    const p = decodePacket(wire.subarray(4));
    assert.equal(p.name, "load-conn");
    assert.deepEqual(JSON.parse(JSON.stringify(p.message)), message);
  });

  test("the splitter joins packets cut anywhere and splits packets sent together", () => {
    const one = encodePacket({ type: PacketType.CMD_RESPONSE, message: { success: "yes" } });
    const two = encodePacket({ type: PacketType.EVENT, name: "list-sa", message: { x: { y: "z" } } });
    const all = Buffer.concat([one, two]);
    for (let cut = 1; cut < all.length; cut++) {
      const s = new PacketSplitter();
      const got = [...s.push(all.subarray(0, cut)), ...s.push(all.subarray(cut))].map((b) => decodePacket(b));
      assert.equal(got.length, 2, `cut at ${cut}`);
      assert.equal(got[1]?.name, "list-sa");
    }
  });

  const hostile: { name: string; bytes: number[]; err: RegExp }[] = [
    { name: "a key whose value length runs past the end", bytes: [3, 1, 0x6b, 0xff, 0xff, 0x41], err: /needs 65535 bytes/ },
    { name: "an unknown element type", bytes: [9], err: /unknown element type 9/ },
    { name: "a section end without a section", bytes: [2], err: /without a section/ },
    { name: "a section never closed", bytes: [1, 1, 0x73], err: /not closed/ },
    { name: "a list holding a section", bytes: [4, 1, 0x6c, 1, 1, 0x73], err: /inside list/ },
    { name: "a list never ended", bytes: [4, 1, 0x6c, 5, 0, 1, 0x41], err: /cut short/ },
    { name: "an empty key name", bytes: [3, 0], err: /empty key/ },
    { name: "a duplicate key", bytes: [3, 1, 0x6b, 0, 0, 3, 1, 0x6b, 0, 0], err: /duplicate key "k"/ },
    { name: "sections nested too deep", bytes: Array(40).fill([1, 1, 0x73]).flat(), err: /too deep/ },
  ]; // prettier-ignore
  for (const h of hostile)
    test(`hostile message: ${h.name} is refused with the offset`, () => {
      assert.throws(() => decodeMessage(Buffer.from(h.bytes)), (e: unknown) => e instanceof ViciWireError && h.err.test(e.message)); // prettier-ignore
    });

  test("hostile packets: unknown type, oversize length, bytes after a confirm; __proto__ stays a plain key", () => {
    assert.throws(() => decodePacket(Buffer.from([8])), /unknown packet type 8/);
    assert.throws(() => new PacketSplitter().push(Buffer.from([0xff, 0xff, 0xff, 0xff])), /packet length/);
    assert.throws(() => decodePacket(Buffer.from([PacketType.EVENT_CONFIRM, 1])), /bytes after/);
    const m = decodeMessage(Buffer.from([3, 9, ...Buffer.from("__proto__"), 0, 1, 0x78]));
    assert.equal(m["__proto__"], "x");
    assert.equal(({} as Record<string, unknown>)["x"], undefined);
  });

  test("random bytes never crash the decoder with anything but ViciWireError", () => {
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(Array.from({ length: 1 + (i % 40) }, () => Math.floor(Math.random() * 256)));
      try {
        decodePacket(b);
      } catch (e) {
        assert.ok(e instanceof ViciWireError, String(e));
      }
    }
  });
});

const pfx = (s: string): Prefix => parsePrefix(s) as Prefix;
function snapshot(
  nodes: Record<string, { ip: string; cidr: string; enc?: Record<string, unknown> }>,
): NodeSnapshot {
  return {
    records: new Map(Object.entries(nodes).map(([n, v]) => [n, { record: { name: n, addresses: { ipv4: v.ip }, ...(v.enc ? { encryption: v.enc } : {}) } }])), // prettier-ignore
    owned: new Map(Object.entries(nodes).map(([n, v]) => [n, [pfx(v.cidr)]])),
  } as unknown as NodeSnapshot;
}

describe("IPsec connections", () => {
  test("one per IPsec peer, selectors = its pod CIDRs, the first name initiates; WireGuard peers and duplicate keys left out", () => {
    const k2 = spki();
    const s = snapshot({
      n1: { ip: "172.31.0.2", cidr: "10.200.1.0/24", enc: { type: "ipsec", publicKey: spki(), port: 51872 } },
      n2: { ip: "172.31.0.3", cidr: "10.200.2.0/24", enc: { type: "ipsec", publicKey: k2, port: 51874 } },
      n0: { ip: "172.31.0.4", cidr: "10.200.3.0/24", enc: { type: "ipsec", publicKey: k2, port: 51876 } },
      n3: { ip: "172.31.0.5", cidr: "10.200.4.0/24", enc: { type: "wireguard", publicKey: "x", port: 1 } },
    });
    const peers = desiredIpsecPeers(s, "n1");
    assert.deepEqual(peers.map((p) => [p.node, p.initiator, p.remoteCidrs]), [["n0", false, ["10.200.3.0/24"]]]); // prettier-ignore
    const p2 = desiredIpsecPeers(s, "n2");
    assert.deepEqual(
      p2.map((p) => [p.node, p.initiator]),
      [
        ["n0", false],
        ["n1", false],
      ],
    );
    const msg = connMessage({ node: "n2", ip: "172.31.0.3", publicKey: k2, cidrs: ["10.200.2.0/24"], rekeySeconds: 60, dpdSeconds: 5 }, p2[1]!); // prettier-ignore
    const conn = msg["membrane-n1"] as Record<
      string,
      Record<string, Record<string, Record<string, unknown>>>
    >;
    assert.deepEqual(conn["children"]?.["pods"]?.["remote_ts"], ["10.200.1.0/24"]);
    assert.equal(conn["children"]?.["pods"]?.["start_action"], "none");
    assert.match(String((conn["remote"] as unknown as { pubkeys: string[] }).pubkeys[0]), /BEGIN PUBLIC KEY/);
  });

  test("list-sas events -> SAs; up only with an ESTABLISHED IKE SA and an INSTALLED CHILD_SA", () => {
    const sas = parseListSas([
      { "membrane-n2": { state: "ESTABLISHED", initiator: "yes", established: "7", "remote-host": "172.31.0.3", "child-sas": { "pods-1": { state: "INSTALLED", "spi-in": "c1", "spi-out": "c2", "encr-alg": "AES_GCM_16", "encr-keysize": "256", "bytes-in": "10", "bytes-out": "20", "install-time": "3", "rekey-time": "50", "local-ts": ["10.200.1.0/24"] } } } }, // prettier-ignore
      { "membrane-n3": { state: "CONNECTING", "child-sas": {} } },
    ]);
    assert.equal(sas[0]?.children[0]?.encryption, "AES_GCM_16-256");
    assert.equal(sas[0]?.children[0]?.bytesOut, 20);
    assert.ok(isUp(sas, "membrane-n2"));
    assert.ok(!isUp(sas, "membrane-n3"));
  });
});

describe("IPsec key rotation (pure parts)", () => {
  test("a peer's announced next key is pinned beside its current one; without it only the current one", () => {
    const [k1, next, k2] = [spki(), spki(), spki()];
    const s = snapshot({
      n1: { ip: "172.31.0.2", cidr: "10.200.1.0/24", enc: { type: "ipsec", publicKey: k1, port: 51872, nextPublicKey: next } }, // prettier-ignore
      n2: { ip: "172.31.0.3", cidr: "10.200.2.0/24", enc: { type: "ipsec", publicKey: k2, port: 51874 } },
    });
    const [p1] = desiredIpsecPeers(s, "n2");
    assert.equal(p1?.nextPublicKey, next);
    const local = { node: "n2", ip: "172.31.0.3", publicKey: k2, cidrs: ["10.200.2.0/24"], rekeySeconds: 60, dpdSeconds: 5 }; // prettier-ignore
    const pins = (peer: typeof p1): string[] => ((connMessage(local, peer!)["membrane-n1"] as unknown as { remote: { pubkeys: string[] } }).remote.pubkeys); // prettier-ignore
    assert.equal(pins(p1).length, 2);
    assert.notEqual(pins(p1)[0], pins(p1)[1]);
    const { nextPublicKey: _, ...done } = p1!;
    assert.equal(pins(done).length, 1, "after the rotation: the one key");
    // The initiator's child starts nothing by itself either: a replaced connection keeps its SAs.
    const [p2] = desiredIpsecPeers(s, "n1");
    assert.equal(p2?.initiator, true);
    const child = (connMessage({ ...local, node: "n1" }, p2!)["membrane-n2"] as unknown as { children: { pods: { start_action: string } } }).children.pods; // prettier-ignore
    assert.equal(child.start_action, "none");
  });

  test("next.key: made 0600 beside node.key, committed over it (key.json follows), or discarded", () => {
    const dir = mkdtempSync(join(tmpdir(), "m3e-keys-"));
    try {
      const d = join(dir, "ipsec");
      const k = loadOrCreateIpsecKey(d);
      const next = prepareNextIpsecKey(d);
      assert.equal(statSync(join(d, "next.key")).mode & 0o777, 0o600);
      assert.deepEqual(loadOrCreateIpsecKey(d), k, "node.key untouched by the announcement");
      assert.equal(commitNextIpsecKey(d, next).publicKey, next.publicKey);
      assert.equal(loadOrCreateIpsecKey(d).publicKey, next.publicKey);
      assert.equal(JSON.parse(readFileSync(join(d, "key.json"), "utf8")).publicKey, next.publicKey);
      assert.equal(discardNextIpsecKey(d), false, "nothing left to discard");
      prepareNextIpsecKey(d);
      assert.equal(discardNextIpsecKey(d), true);
      assert.equal(loadOrCreateIpsecKey(d).publicKey, next.publicKey);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("charon's key ids: SHA-1 of the SubjectPublicKeyInfo and of the bare EC point (65 bytes, 0x04 first)", () => {
    const k = spki();
    const ids = viciKeyIds(k);
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id, /^[0-9a-f]{40}$/);
    assert.equal(Buffer.from(k, "base64").subarray(-65)[0], 4, "the point is uncompressed");
  });

  test("flags: --encryption-key-rotation is taken with ipsec; node-to-node is not", () => {
    assert.equal(parseEncryptionFlags({ encryption: "ipsec", encryptionKeyRotation: "24h" }, true)?.keyRotationMs, 86_400_000); // prettier-ignore
    assert.throws(() => parseEncryptionFlags({ encryption: "ipsec", encryptionNodeToNode: true }, true), /--encryption-node-to-node needs --encryption wireguard/); // prettier-ignore
    assert.throws(() => parseEncryptionFlags({ encryptionKeyRotation: "24h" }, true), /--encryption-key-rotation needs --encryption wireguard or ipsec/); // prettier-ignore
  });
});

describe("IPsec node key and record", () => {
  test("the private key is 0600 PEM, reloaded unchanged, and only its public half is in key.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "hip-keys-"));
    try {
      const k = loadOrCreateIpsecKey(join(dir, "ipsec"));
      assert.equal(statSync(join(dir, "ipsec", "node.key")).mode & 0o777, 0o600);
      assert.deepEqual(loadOrCreateIpsecKey(join(dir, "ipsec")), k);
      assert.ok(isIpsecPublicKey(k.publicKey));
      assert.ok(!readFileSync(join(dir, "ipsec", "key.json"), "utf8").includes("PRIVATE"));
      writeFileSync(join(dir, "ipsec", "node.key"), "garbage");
      assert.throws(() => loadOrCreateIpsecKey(join(dir, "ipsec")), /node\.key: not a PEM private key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a record's ipsec key must be an EC P-256 SPKI: others are refused naming the field", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "der", type: "spki" }).toString("base64"); // prettier-ignore
    for (const bad of [rsa, "AAAA", "not base64!", "A".repeat(300)]) assert.ok(!isIpsecPublicKey(bad));
    const rec = (e: unknown): string => JSON.stringify({ v: 1, name: "n2", addresses: { ipv4: "172.31.0.3" }, podCidrs: ["10.200.2.0/24"], labels: {}, routing: "native", bootId: "b", startedAt: "2026-01-01T00:00:00Z", encryption: e }); // prettier-ignore
    const parse = (e: unknown): unknown => parseNodeRecord("cluster/nodes/n2", { value: rec(e), createRevision: 1, modRevision: 1 } as never); // prettier-ignore
    assert.match(String(parse({ type: "ipsec", publicKey: rsa, port: 1 })), /encryption\.publicKey is not a base64 SubjectPublicKeyInfo/); // prettier-ignore
    assert.match(String(parse({ type: "esp", publicKey: spki(), port: 1 })), /encryption\.type is not wireguard, ipsec or mtls-tunnel/); // prettier-ignore
    assert.equal(typeof parse({ type: "ipsec", publicKey: spki(), port: 51872 }), "object");
    assert.equal(
      typeof parse({ type: "ipsec", publicKey: spki(), port: 51872, nextPublicKey: spki() }),
      "object",
    );
    assert.match(String(parse({ type: "ipsec", publicKey: spki(), port: 1, nextPublicKey: rsa })), /encryption\.nextPublicKey is not a base64 SubjectPublicKeyInfo/); // prettier-ignore
  });
});

describe("charon's configuration and the IPsec flags", () => {
  test("strongswan.conf: listed plugins, kernel-libipsec, unprivileged ports, VICI socket in the run dir, no routes of its own", () => {
    const dir = charonRunDir("hip-n1", "n1", "/var/lib/membrane");
    assert.ok(dir.startsWith("/run/membrane-ipsec/"));
    assert.notEqual(dir, charonRunDir("hip-n2", "n2", "/var/lib/membrane"));
    const c = strongswanConf(dir, 51872);
    assert.match(c, /load = .*kernel-libipsec.* vici/);
    assert.match(c, /port = 51872\n\s+port_nat_t = 51873/);
    assert.match(c, /install_routes = no/);
    assert.ok(c.includes(`socket = unix://${dir}/charon.vici`));
  });

  const cases: { name: string; f: Record<string, string | boolean>; ok?: Record<string, unknown>; err?: RegExp }[] = [
    { name: "ipsec with defaults", f: { encryption: "ipsec" }, ok: { mode: "ipsec", port: 51872, strict: false } },
    { name: "ipsec strict, port and rekey", f: { encryption: "ipsec", encryptionStrict: true, ipsecPort: "5000", ipsecRekeySeconds: "20" }, ok: { mode: "ipsec", port: 5000, strict: true, rekeySeconds: 20 } },
    { name: "a port that leaves no room for ESP in UDP", f: { encryption: "ipsec", ipsecPort: "65535" }, err: /--ipsec-port "65535" is not a port \(1-65534\)/ },
    { name: "a rekey too short", f: { encryption: "ipsec", ipsecRekeySeconds: "5" }, err: /--ipsec-rekey-seconds "5"/ },
    { name: "ipsec flags without ipsec", f: { encryption: "wireguard", ipsecPort: "5000" }, err: /need --encryption ipsec/ },
    { name: "an unknown mode", f: { encryption: "esp" }, err: /is not disabled, wireguard, ipsec or mtls-tunnel/ },
  ]; // prettier-ignore
  for (const c of cases)
    test(`flags: ${c.name}`, () => {
      if (c.err) {
        assert.throws(() => parseEncryptionFlags(c.f, true), (e: unknown) => isMembraneError(e) && c.err!.test(e.message)); // prettier-ignore
        return;
      }
      const o = parseEncryptionFlags(c.f, true) as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(c.ok ?? {})) assert.equal(o[k], v, k);
    });
});
