// The pure parts of WireGuard encryption (no root): keys against Debian's `wg pubkey`, the node
// record's `encryption` read as untrusted input, peers from a node snapshot, the peer plan and
// `wg show dump` reading, the strict table script, the flags, and the strict drop's log prefix.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { generateWgKeyPair, isWgKey, loadOrCreateNodeKey, publicKeyOf } from "../../src/encryption/keys.js";
import { desiredPeers, parseWgDump, planPeers, type WgPeer } from "../../src/encryption/peers.js";
import { encryptTableScript, STRICT_DROP_PREFIX } from "../../src/encryption/strict.js";
import { parseEncryptionFlags } from "../../src/encryption/options.js";
import { parseNodeRecord } from "../../src/cluster/node-record.js";
import { parseLogPrefix } from "../../src/abi/log-prefix.js";
import { parsePrefix, type Prefix } from "../../src/labels/cidr.js";
import type { NodeSnapshot } from "../../src/cluster/node-view.js";
import { isMembraneError } from "../../src/errors.js";

const hasWg = spawnSync("sh", ["-c", "command -v wg"]).status === 0;

function record(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    v: 1,
    name,
    addresses: { ipv4: "172.31.0.2" },
    podCidrs: ["10.200.0.0/24"],
    labels: {},
    routing: "native",
    bootId: "b",
    startedAt: "2026-01-01T00:00:00Z",
    ...extra,
  });
}

describe("WireGuard keys", () => {
  test(
    "a generated pair is WireGuard's: `wg pubkey` derives the same public key",
    { skip: hasWg ? false : "needs wg" },
    () => {
      const [priv, pub] = generateWgKeyPair();
      assert.ok(isWgKey(priv) && isWgKey(pub));
      const r = spawnSync("wg", ["pubkey"], { input: priv + "\n", encoding: "utf8" });
      assert.equal(r.stdout.trim(), pub);
      assert.equal(publicKeyOf(priv), pub);
    },
  );

  test("the key file is 0600 in a 0700 dir, reloaded unchanged; a corrupt file is an error naming it", () => {
    const dir = mkdtempSync(join(tmpdir(), "hwg-keys-"));
    try {
      const k = loadOrCreateNodeKey(join(dir, "wg"));
      assert.equal(statSync(k.privateKeyFile).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, "wg")).mode & 0o777, 0o700);
      const again = loadOrCreateNodeKey(join(dir, "wg"));
      assert.deepEqual(again, k);
      assert.ok(
        !readFileSync(join(dir, "wg", "key.json"), "utf8").includes(
          readFileSync(k.privateKeyFile, "utf8").trim(),
        ),
      );
      spawnSync("sh", ["-c", `echo garbage > ${k.privateKeyFile}`]);
      assert.throws(
        () => loadOrCreateNodeKey(join(dir, "wg")),
        (e) => isMembraneError(e) && e.code === "ENCRYPTION_FAILED" && e.message.includes(k.privateKeyFile),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a peer's encryption record is untrusted input", () => {
  const key = generateWgKeyPair()[1];
  const cases: { name: string; enc: unknown; why?: RegExp }[] = [
    { name: "a valid key and port", enc: { type: "wireguard", publicKey: key, port: 51871 } },
    { name: "another type", enc: { type: "openvpn", publicKey: key, port: 1 }, why: /encryption\.type/ },
    {
      name: "a key of 31 bytes",
      enc: { type: "wireguard", publicKey: Buffer.alloc(31).toString("base64"), port: 1 },
      why: /publicKey/,
    },
    {
      name: "a key with a newline (config injection)",
      enc: { type: "wireguard", publicKey: key + "\nAllowedIPs = 0.0.0.0/0", port: 1 },
      why: /publicKey/,
    },
    { name: "port 0", enc: { type: "wireguard", publicKey: key, port: 0 }, why: /port/ },
    { name: "port 70000", enc: { type: "wireguard", publicKey: key, port: 70000 }, why: /port/ },
    { name: "a port as text", enc: { type: "wireguard", publicKey: key, port: "51871" }, why: /port/ },
    { name: "a list", enc: [], why: /not a map/ },
    {
      name: "a rotation's next key and node-to-node",
      enc: {
        type: "wireguard",
        publicKey: key,
        port: 1,
        nextPublicKey: generateWgKeyPair()[1],
        nodeToNode: true,
      },
    },
    {
      name: "a next key with a newline (config injection)",
      enc: { type: "wireguard", publicKey: key, port: 1, nextPublicKey: key + "\nendpoint 1.2.3.4:5" },
      why: /encryption\.nextPublicKey/,
    },
    {
      name: "node-to-node as text",
      enc: { type: "wireguard", publicKey: key, port: 1, nodeToNode: "yes" },
      why: /encryption\.nodeToNode/,
    },
  ];
  for (const c of cases) {
    test(`${c.name} is ${c.why ? "refused" : "accepted"}`, () => {
      const r = parseNodeRecord("cluster/nodes/n2", {
        value: record("n2", { encryption: c.enc }),
        createRevision: 1,
        modRevision: 1,
      } as never);
      if (c.why) assert.match(String(r), c.why);
      else assert.equal(typeof r, "object");
    });
  }
});

describe("peers", () => {
  const p = (s: string): Prefix => parsePrefix(s) as Prefix;
  const [k2, k3] = [generateWgKeyPair()[1], generateWgKeyPair()[1]];
  const rec = (name: string, ip: string, enc?: object) => ({
    record: JSON.parse(record(name, { addresses: { ipv4: ip }, ...(enc ? { encryption: enc } : {}) })),
    podCidrs: [],
    createRevision: 1,
  });
  const snap: NodeSnapshot = {
    records: new Map([
      ["n1", rec("n1", "172.31.0.2", { type: "wireguard", publicKey: generateWgKeyPair()[1], port: 1 })],
      ["n2", rec("n2", "172.31.0.3", { type: "wireguard", publicKey: k2, port: 51872 })],
      ["n3", rec("n3", "172.31.0.4", { type: "wireguard", publicKey: k3, port: 51873 })],
      ["n4", rec("n4", "172.31.0.5")],
    ]),
    owned: new Map([
      ["n1", [p("10.200.0.0/24")]],
      ["n2", [p("10.200.1.0/24")]],
      ["n3", [p("10.200.2.0/24"), p("10.200.0.0/25")]],
      ["n4", [p("10.200.3.0/24")]],
    ]),
  };

  test("one per node with a key, allowed IPs = its owned pod CIDRs minus any overlapping ours; no key, no peer", () => {
    assert.deepEqual(desiredPeers(snap, "n1"), [
      { node: "n2", publicKey: k2, endpoint: "172.31.0.3:51872", allowedIps: ["10.200.1.0/24"] },
      { node: "n3", publicKey: k3, endpoint: "172.31.0.4:51873", allowedIps: ["10.200.2.0/24"] },
    ]);
  });

  test("the plan sets only what differs and removes peers nobody publishes", () => {
    const want: WgPeer[] = desiredPeers(snap, "n1");
    const gone = generateWgKeyPair()[1];
    const live = [
      {
        publicKey: k2,
        endpoint: "172.31.0.3:51872",
        allowedIps: ["10.200.1.0/24"],
        latestHandshake: 5,
        rxBytes: 1,
        txBytes: 1,
      },
      {
        publicKey: gone,
        endpoint: "172.31.0.9:1",
        allowedIps: [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
      },
    ];
    assert.deepEqual(planPeers(want, live), [
      ...["peer", gone, "remove"],
      ...["peer", k3, "endpoint", "172.31.0.4:51873", "allowed-ips", "10.200.2.0/24"],
    ]);
    assert.deepEqual(
      planPeers(want, [
        ...live.slice(0, 1),
        { ...live[0]!, publicKey: k3, endpoint: "172.31.0.4:51873", allowedIps: ["10.200.2.0/24"] },
      ]),
      [],
    );
  });

  test("`wg show dump`: the interface line (private key) is skipped; peers parsed", () => {
    const dump = `PRIVATEKEYSECRET=\tpub=\t51871\toff\n${k2}\t(none)\t172.31.0.3:51872\t10.200.1.0/24,10.200.9.0/24\t1700000000\t10\t20\toff\n${k3}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n`;
    const peers = parseWgDump(dump);
    assert.deepEqual(peers[0], {
      publicKey: k2,
      endpoint: "172.31.0.3:51872",
      allowedIps: ["10.200.1.0/24", "10.200.9.0/24"],
      latestHandshake: 1700000000,
      rxBytes: 10,
      txBytes: 20,
    });
    assert.deepEqual(peers[1], { publicKey: k3, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0 });
    assert.ok(!JSON.stringify(peers).includes("PRIVATEKEYSECRET"));
  });
});

describe("strict mode table and flags", () => {
  test("the script replaces the table in one transaction and drops traffic to the strict CIDRs not leaving by the tunnel", () => {
    const s = encryptTableScript({
      tunnelIf: "mwg0",
      strictCidrs: ["10.200.0.0/16"],
      localCidrs: ["10.200.1.0/24"],
      logGroup: 7,
    });
    assert.match(s, /^table inet membrane_encrypt \{\}\ndelete table inet membrane_encrypt\n/);
    assert.match(s, /elements = \{ 10\.200\.0\.0\/16 \}/);
    assert.match(
      s,
      /oifname != "mwg0" ip daddr @strict4 ip daddr != @local4 counter log group 7 prefix "mbr:d:h0:out:enc" drop/,
    );
    assert.doesNotMatch(
      encryptTableScript({ tunnelIf: "mwg0", localCidrs: [], logGroup: 7 }),
      /chain strict/,
    );
    assert.throws(
      () => encryptTableScript({ tunnelIf: "w", strictCidrs: ["10.0.0.0/33"], localCidrs: [], logGroup: 1 }),
      /ENCRYPTION|strict-cidr/,
    );
  });

  test("the strict drop's prefix reads back as the host's egress drop of unencrypted traffic; never an endpoint's", () => {
    assert.deepEqual(parseLogPrefix(STRICT_DROP_PREFIX), {
      host: true,
      direction: "out",
      reason: { kind: "unencrypted" },
      allowed: false,
    });
    assert.equal(parseLogPrefix("mbr:d:e3:out:enc"), undefined);
  });

  const flagCases: {
    name: string;
    f: Parameters<typeof parseEncryptionFlags>[0];
    cluster: boolean;
    err?: RegExp;
  }[] = [
    { name: "off by default", f: {}, cluster: false },
    { name: "wireguard in cluster mode", f: { encryption: "wireguard" }, cluster: true },
    {
      name: "wireguard without cluster mode",
      f: { encryption: "wireguard" },
      cluster: false,
      err: /needs cluster mode/,
    },
    { name: "an unknown mode", f: { encryption: "esp" }, cluster: true, err: /--encryption "esp"/ },
    {
      name: "strict without encryption",
      f: { encryptionStrict: true },
      cluster: true,
      err: /--encryption-strict needs/,
    },
    {
      name: "a bad port",
      f: { encryption: "wireguard", wireguardPort: "0x10" },
      cluster: true,
      err: /--wireguard-port "0x10"/,
    },
    {
      name: "a bad strict CIDR",
      f: { encryption: "wireguard", encryptionStrict: true, encryptionStrictCidr: "10.0.0.0/8,nope" },
      cluster: true,
      err: /"nope" \(item 2\)/,
    },
  ];
  for (const c of flagCases) {
    test(`flags: ${c.name}`, () => {
      if (c.err)
        assert.throws(
          () => parseEncryptionFlags(c.f, c.cluster),
          (e) => isMembraneError(e) && e.code === "ENCRYPTION_INVALID" && c.err!.test(e.message),
        );
      else parseEncryptionFlags(c.f, c.cluster);
    });
  }
});
