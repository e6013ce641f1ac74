// The mTLS node tunnel's pure parts (no root): its flags, the node record it publishes, its nft
// redirect and strict chain, the out_c rules that keep a tunnel socket's identity mark, and the
// checks of the tunnel process's messages (hostile: the process parses bytes from the network).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseEncryptionFlags } from "../../src/encryption/options.js";
import { encryptTableScript } from "../../src/encryption/strict.js";
import { fromTunnel } from "../../src/encryption/mtls/wire.js";
import { parseNodeRecord } from "../../src/cluster/node-record.js";
import { compile } from "../../src/datapath/compile.js";
import { tunnelRules } from "../../src/datapath/compile-tunnel.js";
import { isMembraneError } from "../../src/errors.js";
import { encryptionSummaryRows, tunnelRows } from "../../src/cli/commands/encryption.js";

const flags = { encryption: "mtls-tunnel" } as const;

describe("--encryption mtls-tunnel flags", () => {
  test("defaults: HBONE's port 15008, redirect 15006, group and user 1338, trust domain cluster.local", () => {
    assert.deepEqual(parseEncryptionFlags(flags, true), {
      mode: "mtls-tunnel",
      strict: false,
      port: 15008,
      tunnel: { redirectPort: 15006, gid: 1338, uid: 1338, trustDomain: "cluster.local" },
    });
    assert.equal(parseEncryptionFlags({ ...flags, encryptionStrict: true }, true)?.strict, true);
  });
  const bad: { name: string; f: Record<string, string>; why: RegExp }[] = [
    { name: "a port of 0", f: { mtlsTunnelPort: "0" }, why: /--mtls-tunnel-port "0"/ },
    {
      name: "a redirect port as text",
      f: { mtlsTunnelRedirectPort: "http" },
      why: /--mtls-tunnel-redirect-port/,
    },
    { name: "the same port twice", f: { mtlsTunnelPort: "15006" }, why: /same port/ },
    { name: "group 0 (root's)", f: { mtlsTunnelGid: "0" }, why: /--mtls-tunnel-gid/ },
    { name: "an upper-case trust domain", f: { trustDomain: "Evil.Local" }, why: /--trust-domain/ },
  ];
  for (const c of bad)
    test(`${c.name} is refused naming the flag`, () => {
      assert.throws(
        () => parseEncryptionFlags({ ...flags, ...c.f }, true),
        (e: unknown) => isMembraneError(e) && c.why.test(e.message),
      );
    });
  test("without cluster mode it is refused", () => {
    assert.throws(() => parseEncryptionFlags(flags, false), /needs cluster mode/);
  });
  const wrongMode: { name: string; f: Record<string, string | boolean>; why: RegExp }[] = [
    { name: "--mtls-tunnel-port with wireguard", f: { encryption: "wireguard", mtlsTunnelPort: "15008" }, why: /--mtls-tunnel-port needs --encryption mtls-tunnel/ }, // prettier-ignore
    { name: "--mtls-tunnel-gid with ipsec", f: { encryption: "ipsec", mtlsTunnelGid: "1338" }, why: /--mtls-tunnel-gid needs --encryption mtls-tunnel/ }, // prettier-ignore
    { name: "--encryption-node-to-node with mtls-tunnel", f: { ...flags, encryptionNodeToNode: true }, why: /--encryption-node-to-node needs --encryption wireguard/ }, // prettier-ignore
    { name: "--encryption-key-rotation with mtls-tunnel", f: { ...flags, encryptionKeyRotation: "24h" }, why: /--encryption-key-rotation needs --encryption wireguard/ }, // prettier-ignore
    { name: "--ipsec-port with mtls-tunnel", f: { ...flags, ipsecPort: "500" }, why: /--ipsec-port .* need --encryption ipsec/ }, // prettier-ignore
  ];
  for (const c of wrongMode)
    test(`${c.name} is refused naming the flag`, () => {
      assert.throws(
        () => parseEncryptionFlags(c.f, true),
        (e: unknown) => isMembraneError(e) && c.why.test(e.message),
      );
    });
});

describe("the node record's mtls-tunnel entry", () => {
  const rec = (enc: unknown): string =>
    JSON.stringify({
      v: 1,
      name: "n2",
      addresses: { ipv4: "172.31.0.2" },
      podCidrs: ["10.200.1.0/24"],
      labels: {},
      routing: "native",
      bootId: "b",
      startedAt: new Date().toISOString(),
      encryption: enc,
    });
  const cases: { name: string; enc: unknown; why?: RegExp }[] = [
    { name: "a port and one root", enc: { type: "mtls-tunnel", port: 15008, roots: ["MIIB"] } },
    { name: "no roots", enc: { type: "mtls-tunnel", port: 15008, roots: [] }, why: /roots is not a list/ },
    { name: "nine roots", enc: { type: "mtls-tunnel", port: 15008, roots: Array(9).fill("MIIB") }, why: /roots/ }, // prettier-ignore
    { name: "a PEM root (newlines)", enc: { type: "mtls-tunnel", port: 15008, roots: ["-----BEGIN\nX"] }, why: /roots\[0\]/ }, // prettier-ignore
    { name: "a root of 9 KiB", enc: { type: "mtls-tunnel", port: 15008, roots: ["A".repeat(9000)] }, why: /roots\[0\]/ }, // prettier-ignore
    { name: "port 70000", enc: { type: "mtls-tunnel", port: 70000, roots: ["MIIB"] }, why: /port/ },
  ];
  for (const c of cases)
    test(`${c.name} is ${c.why ? "refused" : "accepted"}`, () => {
      const r = parseNodeRecord("cluster/nodes/n2", { value: rec(c.enc), createRevision: 1, modRevision: 1 });
      if (c.why) assert.match(String(r), c.why);
      else assert.equal(typeof r, "object", String(r));
    });
});

describe("the encryption table of the mTLS tunnel", () => {
  const base = {
    tunnel: { redirect4: "10.200.0.1", port: 15006, clusterCidrs: ["10.200.0.0/16"] },
    localCidrs: ["10.200.0.0/24"],
    logGroup: 1,
  };
  test("pods' TCP to other nodes' pods is DNATed to the tunnel, after the policy chains (-150)", () => {
    const s = encryptTableScript(base);
    assert.match(s, /type nat hook prerouting priority dstnat;/);
    assert.match(s, /meta l4proto tcp ip saddr @tlocal4 ip daddr @tcluster4 ip daddr != @tlocal4 dnat ip to 10\.200\.0\.1:15006/); // prettier-ignore
    assert.doesNotMatch(s, /chain strict/, "no strict chain unless asked");
    assert.doesNotMatch(s, /oifname/, "no WireGuard interface in this mode");
  });
  test("strict mode drops whatever still heads for a remote pod (no interface exception)", () => {
    const s = encryptTableScript({ ...base, strictCidrs: ["10.200.0.0/16"] });
    assert.match(
      s,
      /\n {4}ip daddr @strict4 ip daddr != @local4 counter log group 1 prefix "mbr:d:h0:out:enc" drop/,
    );
  });
});

describe("out_c keeps the tunnel's identity mark", () => {
  test("the group's marked sockets meet the endpoint's ingress with their mark, then accept", () => {
    assert.deepEqual(tunnelRules(1338), [
      "meta skgid 1338 meta mark & 0x01ffffff != 0 oifname vmap @ingress_ep",
      "meta skgid 1338 meta mark & 0x01ffffff != 0 accept",
    ]);
    const t = compile({ ipcache: [], endpoints: [], rules: [], hostIdentity: 1, tunnelGid: 1338 });
    const out = t.chains.find((c) => c.name === "out_c")?.rules ?? [];
    const i = out.findIndex((r) => r.includes("skgid 1338") && r.includes("vmap"));
    const host = out.findIndex((r) => r === "meta mark set 0x00000001" || r.startsWith("meta mark set"));
    assert.ok(i >= 0 && i < host, `before the host mark: ${JSON.stringify(out)}`);
    assert.equal(tunnelRules(undefined).length, 0);
  });
  test("a bad group is refused naming the field", () => {
    assert.throws(
      () => tunnelRules(0),
      (e: unknown) => isMembraneError(e) && e.code === "DATAPATH_STATE_INVALID",
    );
  });
});

describe("messages from the tunnel process (untrusted)", () => {
  const hostile: [string, unknown][] = [
    ["null", null],
    ["a string", "ready"],
    ["an unknown type", { type: "init", node: {} }],
    ["a source question without an id", { type: "source?", ip: "10.0.0.1" }],
    ["a negative id", { type: "source?", id: -1, ip: "10.0.0.1" }],
    ["an address of 1 MB", { type: "source?", id: 1, ip: "1".repeat(1 << 20) }],
    ["a status with a non-list", { type: "status", id: 1, peers: "x" }],
    ["a status of 20,000 peers", { type: "status", id: 1, peers: Array(20_000).fill({}) }],
    ["a refusal without a reason", { type: "refused", from: "n1" }],
    ["a fatal without a message", { type: "fatal" }],
  ];
  for (const [name, m] of hostile) test(`${name} is dropped`, () => assert.equal(fromTunnel(m), undefined));
  test("well-formed ones are read", () => {
    assert.deepEqual(fromTunnel({ type: "source?", id: 3, ip: "10.200.0.5", extra: 1 }), {
      type: "source?",
      id: 3,
      ip: "10.200.0.5",
    });
    assert.deepEqual(fromTunnel({ type: "ready" }), { type: "ready" });
  });
});

describe("membrane encryption status (mtls-tunnel)", () => {
  test("a row per peer: key age, last handshake, sessions, streams, inbound accepted/refused, bytes", () => {
    const now = Date.parse("2026-01-01T01:00:00Z");
    const rows = tunnelRows(
      {
        mode: "mtls-tunnel",
        strict: true,
        nodeToNode: false,
        interface: "",
        impl: "hbone",
        port: 15008,
        publicKey: "sha256:00",
        keyCreatedAt: "2026-01-01T00:00:00Z",
        keyAgeSeconds: 3600,
        tunnel: { trustDomain: "cluster.local", redirectPort: 15006, pid: 1 },
        peers: [
          { node: "n2", mode: "mtls-tunnel", strict: true, nodeToNode: false, handshake: "ok", publicKey: "sha256:01", allowedIps: ["10.200.1.0/24"], endpoint: "172.31.0.3:15008", tunnel: { sessions: 2, streamsTotal: 7, streamsOpen: 1, inboundAccepted: 3, inboundRefused: 1 }, txBytes: 10, rxBytes: 20, lastHandshake: "2026-01-01T00:59:00Z", keyCreatedAt: "2026-01-01T00:30:00Z" }, // prettier-ignore
        ],
      },
      now,
    );
    assert.deepEqual(rows[1]?.slice(0, 4), [
      "(this node)",
      "mtls-tunnel, strict",
      ":15008 (redirect :15006)",
      "60m",
    ]);
    assert.deepEqual(rows[2], ["n2", "mtls-tunnel", "172.31.0.3:15008", "30m", "60s ago", "2", "1/7", "3/1", "20", "10"]); // prettier-ignore
  });
  test("`get status` names the tunnel's ports, not an interface, and each peer's handshake", () => {
    const now = Date.parse("2026-01-01T01:00:00Z");
    const rows = encryptionSummaryRows(
      {
        mode: "mtls-tunnel",
        strict: true,
        nodeToNode: false,
        interface: "",
        impl: "hbone",
        port: 15008,
        publicKey: "sha256:00",
        keyCreatedAt: "2026-01-01T00:00:00Z",
        keyAgeSeconds: 3600,
        tunnel: { trustDomain: "cluster.local", redirectPort: 15006 },
        peers: [
          { node: "n2", mode: "mtls-tunnel", strict: true, nodeToNode: false, handshake: "ok", publicKey: "sha256:01", allowedIps: [], endpoint: "172.31.0.3:15008", txBytes: 0, rxBytes: 0, lastHandshake: "2026-01-01T00:59:00Z" }, // prettier-ignore
        ],
      },
      now,
    );
    assert.deepEqual(rows[0], [
      "encryption",
      "mtls-tunnel (hbone) :15008 (redirect :15006), strict on, key age 60m",
    ]);
    assert.match(rows[1]?.[1] ?? "", /^mtls-tunnel, strict on, key age -, last handshake 60s ago \(ok\)$/);
  });
});
