/**
 * The NFLOG reader against the real kernel (needs root): a throwaway network
 * namespace, an nft table that logs and drops, and traffic inside it.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { FlowEnricher } from "../../src/observe/enrich.js";
import { NflogReader, readNflogInNetns, type NflogEvent } from "../../src/observe/nflog.js";
import { LOOKUP } from "./fixtures.js";
import { rootWith } from "../support/skip.js";

function skipReason(): string | undefined {
  return rootWith(
    "network namespaces, nftables, NFLOG",
    ["ip", "nft", "ping"],
    "nftables iproute2 iputils-ping",
  );
}

const skip = skipReason();
const NS = `mbt${randomBytes(3).toString("hex")}obs`;
const GROUP = 7;
const sh = (args: string[]): string => execFileSync(args[0] as string, args.slice(1), { encoding: "utf8" });
const inNs = (args: string[]): string => sh(["ip", "netns", "exec", NS, ...args]);

const RULES = `
table inet mbtobs {
  chain in_c {
    type filter hook input priority filter; policy accept;
    icmp type echo-request log group ${GROUP} prefix "mbr:d:e12:in:r7" drop
    tcp dport 81 log group ${GROUP} prefix "mbr:d:e12:in:def" drop
    udp dport 9999 log group ${GROUP} prefix "mbr:d:e12:in:def" drop
  }
}`;

/** Sends `n` UDP datagrams to 127.0.0.1:9999 from inside the namespace. */
function flood(n: number): void {
  const js = `const s=require("dgram").createSocket("udp4");const b=Buffer.alloc(16);let i=0;
function go(){let k=0;while(i<${n}&&k++<256){s.send(b,9999,"127.0.0.1");i++}if(i<${n})setImmediate(go);else setTimeout(()=>s.close(),200)}go();`;
  inNs([process.execPath, "-e", js]);
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
}

describe("NflogReader in a network namespace (root)", { skip: skip ?? false }, () => {
  before(() => {
    sh(["ip", "netns", "add", NS]);
    inNs(["ip", "link", "set", "lo", "up"]);
    execFileSync("ip", ["netns", "exec", NS, "nft", "-f", "-"], { input: RULES });
  });
  after(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  test("a dropped ping and a dropped TCP SYN arrive with prefix, packet and sequence numbers, and enrich into flows", async () => {
    const events: NflogEvent[] = [];
    const r = new NflogReader({ netns: NS, group: GROUP, onEvent: (e) => events.push(e), qthreshold: 1 });
    await r.start();
    try {
      spawnSync("ip", ["netns", "exec", NS, "ping", "-c", "1", "-W", "1", "127.0.0.1"]);
      spawnSync("ip", [
        "netns",
        "exec",
        NS,
        process.execPath,
        "-e",
        'require("net").connect(81, "127.0.0.1").on("error", () => {}); setTimeout(() => process.exit(0), 300)',
      ]);
      await waitFor(() => events.length >= 2, 3000);
      const ping = events.find((e) => e.prefix === "mbr:d:e12:in:r7");
      const syn = events.find((e) => e.prefix === "mbr:d:e12:in:def");
      assert.ok(ping && syn, `got ${JSON.stringify(events.map((e) => e.prefix))}`);
      assert.ok(
        syn.seq !== undefined && ping.seq !== undefined && syn.seq > ping.seq,
        "sequence numbers increase",
      );
      assert.ok(Math.abs(ping.timestampMs - Date.now()) < 10_000, "timestamp is now");

      const enricher = new FlowEnricher({ lookup: LOOKUP, nodeName: "node1" });
      const f = enricher.enrich(ping);
      assert.equal(f?.verdict, "DROPPED");
      assert.equal(f?.drop_reason_desc, "POLICY_DENY");
      assert.deepEqual(f?.IP, { source: "127.0.0.1", destination: "127.0.0.1", ipVersion: "IPv4" });
      assert.deepEqual(f?.l4, { ICMPv4: { type: 8, code: 0 } });
      assert.equal(f?.ingress_denied_by?.[0]?.name, "rule1");
      const g = enricher.enrich(syn);
      assert.equal(g?.drop_reason_desc, "POLICY_DENIED");
      assert.equal(g?.Summary, "TCP Flags: SYN");
      assert.deepEqual(r.stats(), { events: events.length, lost: 0, overflows: 0, invalid: 0 });
    } finally {
      await r.stop();
    }
  });

  test("readNflogInNetns (the datapath tests' shape) delivers events and stops", async () => {
    const events: NflogEvent[] = [];
    const h = await readNflogInNetns(NS, GROUP, (e) => events.push(e));
    try {
      spawnSync("ip", ["netns", "exec", NS, "ping", "-c", "1", "-W", "1", "127.0.0.1"]);
      await waitFor(() => events.length >= 1, 3000);
      assert.equal(events[0]?.prefix, "mbr:d:e12:in:r7");
      assert.equal(events[0]?.packet[0], 0x45);
    } finally {
      h.stop();
    }
  });

  test("a second reader on a bound group fails with a message naming group and namespace", async () => {
    const first = new NflogReader({ netns: NS, group: GROUP, onEvent: () => undefined });
    await first.start();
    try {
      const second = new NflogReader({ netns: NS, group: GROUP, onEvent: () => undefined });
      await assert.rejects(second.start(), (e: Error) => {
        assert.match(
          e.message,
          new RegExp(
            `^Cannot read NFLOG events: binding group ${GROUP} in netns ${NS}: group ${GROUP} is bound by another reader \\(EPERM\\)`,
          ),
        );
        return true;
      });
      await second.stop();
    } finally {
      await first.stop();
    }
  });

  test("a flood of 100,000 logged drops: events/s measured, every event delivered or counted as lost", async () => {
    let n = 0;
    let firstAt = 0;
    let lastAt = 0;
    const r = new NflogReader({
      netns: NS,
      group: GROUP,
      onEvent: () => {
        if (n++ === 0) firstAt = performance.now();
        lastAt = performance.now();
      },
    });
    await r.start();
    const total = 100_000;
    try {
      flood(total);
      await waitFor(() => r.stats().events + r.stats().lost >= total, 20_000);
      const st = r.stats();
      const rate = Math.round(st.events / ((lastAt - firstAt) / 1000));
      console.log(JSON.stringify({ nflogFlood: { sent: total, ...st, eventsPerSec: rate } }));
      // Losses only show as a gap before a later event; the last ones may go unnoticed.
      assert.ok(st.events + st.lost >= total - 1000, `delivered ${st.events} + lost ${st.lost} of ${total}`);
      assert.ok(st.events > 0);
    } finally {
      await r.stop();
    }
  });
});
