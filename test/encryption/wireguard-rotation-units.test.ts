// The pure parts of key rotation, node-to-node encryption and uninstall (no root): the peers a
// rotating or node-to-node peer gets, the `wg set` that swaps a rotated peer, the strict table's
// node addresses, the flags, the key files through a rotation and a crash in it, the order of a
// rotation's steps (against a recording interface, not a kernel: the lab test runs the real one),
// the per-peer status, and which state-directory files uninstall accepts.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import pino from "pino";
import {
  commitNextKey,
  generateWgKeyPair,
  loadOrCreateNodeKey,
  prepareNextKey,
  settlePendingKey,
} from "../../src/encryption/keys.js";
import { desiredPeers, planPeers } from "../../src/encryption/peers.js";
import { encryptTableScript } from "../../src/encryption/strict.js";
import { parseDuration, parseEncryptionFlags } from "../../src/encryption/options.js";
import { KeyRotation } from "../../src/encryption/rotation.js";
import { buildStatus } from "../../src/encryption/status.js";
import { encryptionRows, encryptionSummaryRows } from "../../src/cli/commands/encryption.js";
import { checkUninstall } from "../../src/agent/uninstall-check.js";
import { parsePrefix, type Prefix } from "../../src/labels/cidr.js";
import type { NodeSnapshot } from "../../src/cluster/node-view.js";
import type { NodeRecordV1 } from "../../src/cluster/keys.js";
import { isMembraneError } from "../../src/errors.js";

const p = (s: string): Prefix => parsePrefix(s) as Prefix;
const key = (): string => generateWgKeyPair()[1];
const silent = pino({ level: "silent" });

function snapshot(encs: Record<string, object>): NodeSnapshot {
  const records = new Map<string, { record: NodeRecordV1; podCidrs: []; createRevision: number }>();
  const owned = new Map<string, Prefix[]>();
  for (const [i, name] of ["n1", "n2"].entries()) {
    const enc = encs[name];
    records.set(name, {
      record: {
        v: 1,
        name,
        addresses: { ipv4: `172.31.0.${i + 2}` },
        podCidrs: [],
        labels: {},
        routing: "native",
        bootId: "b",
        startedAt: "2026-01-01T00:00:00Z",
        ...(enc ? { encryption: enc } : {}),
      } as NodeRecordV1,
      podCidrs: [],
      createRevision: 1,
    });
    owned.set(name, [p(`10.200.${i}.0/24`)]);
  }
  return { records, owned } as unknown as NodeSnapshot;
}

describe("peers of a rotating and a node-to-node node", () => {
  const [a1, a2, mine] = [key(), key(), key()];
  test("a rotating peer: its current key owns its CIDRs, its next key is a second peer owning nothing", () => {
    const s = snapshot({
      n1: { type: "wireguard", publicKey: mine, port: 1 },
      n2: { type: "wireguard", publicKey: a1, port: 51872, nextPublicKey: a2 },
    });
    assert.deepEqual(desiredPeers(s, "n1"), [
      { node: "n2", publicKey: a1, endpoint: "172.31.0.3:51872", allowedIps: ["10.200.1.0/24"] },
      { node: "n2", publicKey: a2, endpoint: "172.31.0.3:51872", allowedIps: [], next: true },
    ]);
  });

  test("the swap after the switch is one `wg set`: the old key removed, the new one given the CIDRs", () => {
    const s = snapshot({
      n1: { type: "wireguard", publicKey: mine, port: 1 },
      n2: { type: "wireguard", publicKey: a2, port: 51872 },
    });
    const live = [
      {
        publicKey: a1,
        endpoint: "172.31.0.3:51872",
        allowedIps: ["10.200.1.0/24"],
        latestHandshake: 1,
        rxBytes: 0,
        txBytes: 0,
      },
      {
        publicKey: a2,
        endpoint: "172.31.0.3:51872",
        allowedIps: [],
        latestHandshake: 2,
        rxBytes: 0,
        txBytes: 0,
      },
    ];
    assert.deepEqual(planPeers(desiredPeers(s, "n1"), live), [
      ...["peer", a1, "remove"],
      ...["peer", a2, "endpoint", "172.31.0.3:51872", "allowed-ips", "10.200.1.0/24"],
    ]);
  });

  test("node-to-node: the peer's node address is in its allowed IPs only when both sides have it", () => {
    const both = snapshot({
      n1: { type: "wireguard", publicKey: mine, port: 1, nodeToNode: true },
      n2: { type: "wireguard", publicKey: a1, port: 51872, nodeToNode: true },
    });
    assert.deepEqual(desiredPeers(both, "n1", { nodeToNode: true })[0], {
      node: "n2",
      publicKey: a1,
      endpoint: "172.31.0.3:51872",
      allowedIps: ["10.200.1.0/24", "172.31.0.3/32"],
      nodeAddress: "172.31.0.3",
    });
    assert.deepEqual(desiredPeers(both, "n1")[0]?.allowedIps, ["10.200.1.0/24"], "this node has it off");
    const peerOff = snapshot({
      n1: { type: "wireguard", publicKey: mine, port: 1, nodeToNode: true },
      n2: { type: "wireguard", publicKey: a1, port: 51872 },
    });
    assert.deepEqual(desiredPeers(peerOff, "n1", { nodeToNode: true })[0]?.allowedIps, ["10.200.1.0/24"]);
  });

  test("strict mode with node-to-node: only WireGuard's own UDP may reach a peer node in clear", () => {
    const s = encryptTableScript({
      tunnelIf: "mwg0",
      strictCidrs: ["10.200.0.0/16"],
      localCidrs: ["10.200.0.0/24"],
      logGroup: 7,
      nodeIps: ["172.31.0.3/32"],
      port: 51871,
    });
    assert.match(s, /set nodes4 \{ type ipv4_addr; flags interval; elements = \{ 172\.31\.0\.3\/32 \} \}/);
    const accept = s.indexOf(`oifname != "mwg0" ip daddr @nodes4 udp sport 51871 accept`);
    const drop = s.indexOf(`oifname != "mwg0" ip daddr @nodes4 counter log group 7`);
    assert.ok(accept > 0 && drop > accept, s);
    assert.doesNotMatch(
      encryptTableScript({ tunnelIf: "mwg0", strictCidrs: ["10.200.0.0/16"], localCidrs: [], logGroup: 7 }),
      /nodes4/,
    );
  });
});

describe("rotation and node-to-node flags", () => {
  test("durations", () => {
    assert.equal(parseDuration("24h"), 86_400_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("0"), 0);
    for (const bad of ["", "24", "1.5h", "-1h", "h", "24h "])
      assert.equal(parseDuration(bad), undefined, bad);
  });
  const cases: { flags: Record<string, unknown>; cluster?: boolean; why?: RegExp; want?: object }[] = [
    { flags: { encryption: "wireguard", encryptionKeyRotation: "24h" }, want: { keyRotationMs: 86_400_000 } },
    { flags: { encryption: "wireguard", encryptionKeyRotation: "0" }, want: { keyRotationMs: undefined } },
    { flags: { encryption: "wireguard", encryptionNodeToNode: true }, want: { nodeToNode: true } },
    {
      flags: { encryption: "wireguard", encryptionKeyRotation: "daily" },
      why: /--encryption-key-rotation "daily" is not a duration/,
    },
    { flags: { encryption: "wireguard", encryptionKeyRotation: "30s" }, why: /shorter than 1m/ },
    { flags: { encryptionNodeToNode: true }, why: /--encryption-node-to-node needs --encryption wireguard/ },
    {
      flags: { encryptionKeyRotation: "24h" },
      why: /--encryption-key-rotation needs --encryption wireguard/,
    },
  ];
  for (const c of cases)
    test(`${JSON.stringify(c.flags)} -> ${c.why ? "refused" : "accepted"}`, () => {
      const run = (): unknown => parseEncryptionFlags(c.flags, c.cluster ?? true);
      if (c.why)
        assert.throws(
          run,
          (e) => isMembraneError(e) && e.code === "ENCRYPTION_INVALID" && c.why!.test(e.message),
        );
      else {
        const o = run() as Record<string, unknown>;
        for (const [k, v] of Object.entries(c.want ?? {})) assert.equal(o[k], v, k);
      }
    });
});

describe("key files through a rotation", () => {
  const withDir = (fn: (dir: string) => void | Promise<void>) => async () => {
    const dir = mkdtempSync(join(tmpdir(), "hwg-rot-"));
    try {
      await fn(join(dir, "wireguard"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test(
    "next.key is 0600 beside the old key; committing makes it the node's key (reloaded as such)",
    withDir((dir) => {
      const old = loadOrCreateNodeKey(dir);
      const next = prepareNextKey(dir);
      assert.equal(statSync(next.privateKeyFile).mode & 0o777, 0o600);
      assert.equal(loadOrCreateNodeKey(dir).publicKey, old.publicKey, "not used before the commit");
      const now = commitNextKey(dir, next);
      assert.equal(now.publicKey, next.publicKey);
      assert.deepEqual(loadOrCreateNodeKey(dir), now);
      assert.equal(statSync(join(dir, "key.json")).mode & 0o777, 0o600);
    }),
  );

  test(
    "a crash mid-rotation: the key the interface holds is kept (after the switch: the next; before: the old)",
    withDir((dir) => {
      const old = loadOrCreateNodeKey(dir);
      const n1 = prepareNextKey(dir);
      assert.equal(settlePendingKey(dir, old.publicKey), false, "switch not done: next.key dropped");
      assert.equal(loadOrCreateNodeKey(dir).publicKey, old.publicKey);
      const n2 = prepareNextKey(dir);
      assert.notEqual(n2.publicKey, n1.publicKey);
      assert.equal(settlePendingKey(dir, n2.publicKey), true, "switched: next.key committed");
      assert.equal(loadOrCreateNodeKey(dir).publicKey, n2.publicKey);
      assert.equal(settlePendingKey(dir, n2.publicKey), false, "nothing pending any more");
    }),
  );

  test(
    "the steps in order: announce (record has next), wait, switch, commit, publish (no next); a failed switch withdraws",
    withDir(async (dir) => {
      const k0 = loadOrCreateNodeKey(dir);
      const events: string[] = [];
      let fail = false;
      const r: KeyRotation = new KeyRotation(
        {
          dir,
          logger: silent,
          announceMs: 0,
          switchTo: async (k) => {
            events.push(`switch ${k.publicKey === r.next?.publicKey ? "next" : "?"}`);
            if (fail) throw new Error("wg set failed");
          },
          publish: async () => {
            events.push(`publish ${r.current.publicKey.slice(0, 4)}${r.next ? " +next" : ""}`);
          },
        },
        k0,
      );
      const res = await r.rotate();
      const cur = res.publicKey.slice(0, 4);
      assert.deepEqual(events, [
        `publish ${k0.publicKey.slice(0, 4)} +next`,
        "switch next",
        `publish ${cur}`,
      ]);
      assert.equal(res.previousPublicKey, k0.publicKey);
      assert.equal(loadOrCreateNodeKey(dir).publicKey, res.publicKey, "the files agree");
      events.length = 0;
      fail = true;
      await assert.rejects(r.rotate(), /wg set failed/);
      assert.deepEqual(events, [`publish ${cur} +next`, "switch next", `publish ${cur}`]);
      assert.equal(r.next, undefined);
      assert.equal(loadOrCreateNodeKey(dir).publicKey, res.publicKey, "the old key stays");
      assert.match(r.lastError ?? "", /wg set failed/);
      await r.stop();
    }),
  );
});

test("periodic rotation: a key older than --encryption-key-rotation (counted from its createdAt) rotates once, then re-arms", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), "hwg-per-")), "wireguard");
  try {
    const k0 = loadOrCreateNodeKey(dir);
    const old = { ...k0, createdAt: new Date(Date.now() - 120_000).toISOString() };
    const r = new KeyRotation(
      {
        dir,
        logger: silent,
        announceMs: 0,
        everyMs: 60_000,
        switchTo: async () => {},
        publish: async () => {},
      },
      old,
    );
    assert.equal(r.nextAt(), new Date(Date.parse(old.createdAt) + 60_000).toISOString());
    r.start();
    for (let i = 0; i < 100 && r.rotations === 0; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(r.rotations, 1);
    assert.notEqual(r.current.publicKey, k0.publicKey);
    assert.ok(
      Date.parse(r.nextAt() ?? "") > Date.now() + 50_000,
      "the next one a full period after the new key",
    );
    await r.stop();
  } finally {
    rmSync(join(dir, ".."), { recursive: true, force: true });
  }
});

test("per-peer status: mode, strict, key age, handshake ok/stale/never, the next-key entry", () => {
  const now = Date.parse("2026-01-01T01:00:00Z");
  const [k1, k2] = [key(), key()];
  const records = new Map([
    [
      "n2",
      {
        record: {
          encryption: { type: "wireguard", publicKey: k1, port: 1, keyCreatedAt: "2026-01-01T00:00:00Z" },
        } as NodeRecordV1,
      },
    ],
  ]);
  const s = buildStatus(
    {
      mode: "wireguard",
      strict: true,
      nodeToNode: false,
      interface: "mwg0",
      impl: "wireguard-go",
      port: 1,
      publicKey: key(),
      keyCreatedAt: "2026-01-01T00:30:00Z",
      rotation: { rotations: 0 },
    },
    [
      { node: "n2", publicKey: k1, endpoint: "e", allowedIps: ["10.200.1.0/24"] },
      { node: "n2", publicKey: k2, endpoint: "e", allowedIps: [], next: true },
    ],
    [
      {
        publicKey: k1,
        allowedIps: ["10.200.1.0/24"],
        latestHandshake: now / 1000 - 60,
        rxBytes: 1,
        txBytes: 2,
      },
      { publicKey: k2, allowedIps: [], latestHandshake: now / 1000 - 600, rxBytes: 0, txBytes: 0 },
    ],
    records,
    now,
  );
  assert.equal(s.keyAgeSeconds, 1800);
  assert.deepEqual(
    s.peers.map((x) => [x.mode, x.strict, x.keyAgeSeconds, x.handshake]),
    [
      ["wireguard", true, 3600, "ok"],
      ["wireguard (next key)", true, undefined, "stale"],
    ],
  );
  const never = buildStatus(
    { ...s, peers: undefined } as never,
    [{ node: "n3", publicKey: k1, endpoint: "e", allowedIps: [] }],
    [],
    undefined,
    now,
  );
  assert.equal(never.peers[0]?.handshake, "never");
});

test("uninstall accepts the agent's wireguard/ files in the state directory, refuses anything else there", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hwg-un-"));
  try {
    const state = join(dir, "state");
    mkdirSync(join(state, "wireguard"), { recursive: true });
    for (const f of ["private.key", "key.json", "next.key", "wireguard-go.log"])
      writeFileSync(join(state, "wireguard", f), "x");
    const base = {
      stateDir: state,
      socketPath: join(dir, "agent.sock"),
      netnsPrefix: "hwgu-",
      table: "membrane",
    };
    const plan = await checkUninstall(base);
    assert.ok(plan.stateFiles.includes(join(state, "wireguard", "private.key")));
    writeFileSync(join(state, "wireguard", "notes.txt"), "mine");
    await assert.rejects(
      checkUninstall(base),
      /wireguard\/notes\.txt" was not written by the agent: wireguard\/ holds only/,
    );
    assert.equal(readFileSync(join(state, "wireguard", "notes.txt"), "utf8"), "mine", "nothing removed");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the tables people read: per peer mode, strict, key age, handshake; this node's rotation", () => {
  const now = Date.parse("2026-01-01T01:00:00Z");
  const k = key();
  const s = buildStatus(
    {
      mode: "wireguard",
      strict: true,
      strictCidrs: ["10.200.0.0/16"],
      nodeToNode: true,
      interface: "mwg0",
      impl: "wireguard-go",
      port: 51871,
      publicKey: key(),
      keyCreatedAt: "2026-01-01T00:00:00Z",
      rotation: { rotations: 1, nextPublicKey: key() },
    },
    [{ node: "n2", publicKey: k, endpoint: "172.31.0.3:51872", allowedIps: [], nodeAddress: "172.31.0.3" }],
    [
      {
        publicKey: k,
        allowedIps: ["10.200.1.0/24", "172.31.0.3/32"],
        latestHandshake: now / 1000 - 30,
        rxBytes: 5,
        txBytes: 6,
      },
    ],
    undefined,
    now,
  );
  const rows = encryptionRows(s, now);
  assert.deepEqual(rows[0], [
    "PEER",
    "MODE",
    "STRICT",
    "ENDPOINT",
    "ALLOWED IPS",
    "KEY AGE",
    "LAST HANDSHAKE",
    "RX",
    "TX",
  ]);
  assert.deepEqual(rows[1]?.slice(0, 3), [
    "(this node) mwg0",
    "wireguard (wireguard-go), node-to-node",
    "on (10.200.0.0/16)",
  ]);
  assert.equal(rows[1]?.[5], "60m, rotating");
  assert.deepEqual(rows[2], [
    "n2",
    "wireguard, node-to-node",
    "on",
    "172.31.0.3:51872",
    "10.200.1.0/24,172.31.0.3/32",
    "-",
    "30s ago (ok)",
    "5",
    "6",
  ]);
  assert.deepEqual(encryptionSummaryRows(s, now), [
    ["encryption", "wireguard (wireguard-go) on mwg0, strict on, node-to-node, key age 60m, rotating"],
    ["encryption peer n2", "wireguard, strict on, key age -, last handshake 30s ago (ok)"],
  ]);
});
