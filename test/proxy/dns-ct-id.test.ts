/**
 * The DNS proxy's cache of conntrack answers, tied to each datagram's conntrack id, on real
 * packets (needs root): a network namespace of the test's own (prefix m18), queries from a
 * client address DNATed to the proxy by the datapath's own rule text (compile-nat.ts natRules,
 * dnsIdRules), the real conntrack broker, two resolvers; over IPv4, and over IPv6 with the `ip6`
 * rules the same functions make for the proxy target's `ipv6`. The inside runs in
 * fixtures/dns-ct-node.js; see there for the steps.
 *
 * The attack case: a source's conntrack entry is deleted and the same source address and port
 * go to another server. The next query must be judged by that server's rules and forwarded to
 * it; a cache keyed by the source alone would judge and forward it by the old entry's answer.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { CT_REDIRECT_DNS } from "../../src/abi/marks.js";
import { DNS_ID_BASE, dnsIdRules, natRules, NAT_OUT_BASE } from "../../src/datapath/compile-nat.js";
import type { ProxyTarget } from "../../src/datapath/types.js";
import type { DnsCtAddresses, DnsCtReport } from "./fixtures/dns-ct-node.js";
import { rootWith } from "../support/skip.js";

function skipReason(): string | undefined {
  return rootWith("network namespaces, nftables, ctnetlink", ["ip", "nft"], "nftables iproute2");
}

const skip = skipReason();
const NODE_SCRIPT = fileURLToPath(new URL("./fixtures/dns-ct-node.js", import.meta.url));
const PORT = 15053;
type Family = 4 | 6;
/** The proxy, the client and the two resolvers, per family (all on the namespace's loopback). */
const ADDRESSES: Record<Family, DnsCtAddresses> = {
  4: { proxy: "10.77.0.1", client: "10.77.0.2", resolvers: ["10.77.0.53", "10.77.0.54"] },
  6: { proxy: "fd77::1", client: "fd77::2", resolvers: ["fd77::53", "fd77::54"] },
};
const PROXY: ProxyTarget = {
  ipv4: ADDRESSES[4].proxy,
  ipv6: ADDRESSES[6].proxy,
  l7Port: 15001,
  dnsPort: PORT,
  gid: 4242,
};

/**
 * The table: the client's DNS queries get the redirect bit and the datapath's DNAT; the mark rule
 * when asked. Every packet the namespace sends first gets mark 1, as the node's out_c sets its
 * own packets to the host identity: a mark that must never be read as a conntrack id.
 */
function rules(ns: string, markRule: boolean): string {
  const client = (f: Family): string => `${f === 4 ? "ip" : "ip6"} saddr ${ADDRESSES[f].client}`;
  return `table inet ${ns} {
  chain identity {
    type filter hook output priority -150; policy accept;
    meta mark set 1
  }
  chain out {
    ${NAT_OUT_BASE}
    ${client(4)} udp dport 53 ct mark set ct mark or ${CT_REDIRECT_DNS}
    ${client(6)} udp dport 53 ct mark set ct mark or ${CT_REDIRECT_DNS}
    ${natRules(PROXY).join("\n    ")}
  }
  chain dns_id {
    ${DNS_ID_BASE}
    ${markRule ? dnsIdRules(PROXY).join("\n    ") : ""}
  }
}`;
}

function inNs(ns: string, argv: string[], input?: string): string {
  return execFileSync("ip", ["netns", "exec", ns, ...argv], {
    encoding: "utf8",
    input: input ?? "",
    stdio: ["pipe", "pipe", "pipe"],
    timeout: 60_000,
  });
}

function run(markRule: boolean, family: Family): DnsCtReport {
  const ns = `m18${randomBytes(3).toString("hex")}`;
  execFileSync("ip", ["netns", "add", ns]);
  try {
    // Every address on the namespace's loopback: all the traffic is local, through the same hooks.
    for (const f of [4, 6] as const) {
      const { proxy, client, resolvers } = ADDRESSES[f];
      for (const a of [proxy, client, ...resolvers])
        inNs(ns, ["ip", "addr", "add", `${a}/${f === 4 ? 32 : 128}`, "dev", "lo", ...(f === 6 ? ["nodad"] : [])]); // prettier-ignore
    }
    inNs(ns, ["ip", "link", "set", "lo", "up"]);
    inNs(ns, ["nft", "-f", "-"], rules(ns, markRule));
    const out = inNs(ns, [
      process.execPath,
      NODE_SCRIPT,
      JSON.stringify({ port: PORT, ...ADDRESSES[family] }),
    ]);
    const last = out.trim().split("\n").pop() ?? "";
    const r = JSON.parse(last) as DnsCtReport & { fatal?: string };
    if (r.fatal !== undefined) throw new Error(r.fatal);
    return r;
  } finally {
    spawnSync("ip", ["netns", "del", ns]);
  }
}

const NOERROR = 0;
const REFUSED = 5;

/**
 * The fresh sockets (a new conntrack entry each, so a broker lookup each, batched on the way to the
 * broker and to the kernel): each answered by the server it was sent to, the ones sent to the proxy
 * itself refused, none mixed up; and no answer came from a cache.
 */
const FRESH = 48; // fixtures/dns-ct-node.ts FRESH (not imported: the fixture runs when loaded)
function assertFresh(r: DnsCtReport): void {
  assert.deepEqual(r.fresh.wrong, []);
  assert.equal(r.fresh.sent, FRESH);
  assert.equal(r.fresh.lookups, FRESH);
}

describe("the DNS proxy's conntrack answers, tied to the datagram's ct id", { skip }, () => {
  for (const family of [4, 6] as const) {
    test(`IPv${family}, with the mark rule: a repeat from the same socket skips the broker; after the entry is replaced, the new server's rules judge and it answers`, () => {
      const r = run(true, family);
      assert.equal(r.noPacketMarks, null);
      assert.equal(r.deleted, 1, "the first entry was deleted");
      const [first, again, replaced, b, direct, self] = r.steps;
      assert.ok(first && again && replaced && b && direct && self, JSON.stringify(r));
      // Through the real DNAT: the original destination .53 was found and it answered.
      assert.deepEqual([first.rcode, first.address, first.lookups, first.hits], [NOERROR, "10.0.0.53", 1, 0]);
      assert.notEqual(first.mark, 0, "the datagram carries its conntrack id");
      // The same entry: the same id, answered from the cache (no second broker lookup).
      assert.deepEqual([again.rcode, again.address, again.lookups, again.hits], [NOERROR, "10.0.0.53", 1, 1]);
      assert.equal(again.mark, first.mark);
      // The attack case: a new entry (another id) for the same source; .54's rules refuse a.example.com.
      assert.notEqual(replaced.mark, first.mark);
      assert.deepEqual([replaced.rcode, replaced.lookups], [REFUSED, 2], JSON.stringify(replaced));
      // And what .54 admits is forwarded to .54 (its answer), from the cache of the new entry.
      assert.deepEqual([b.rcode, b.address, b.lookups, b.hits], [NOERROR, "10.0.0.54", 2, 2]);
      // Sent to the proxy itself (no redirect): the identity the output hook left in the mark is cleared.
      assert.equal(direct.mark, 0);
      // Admitted by the rules, still sent to the proxy itself: refused, one broker lookup, no loop.
      assert.deepEqual([self.rcode, self.lookups, self.mark], [REFUSED, 4, 0], JSON.stringify(self));
      assertFresh(r);
    });

    test(`IPv${family}, without the mark rule: no datagram carries an id (the identity in the mark never matches one), and every query asks the broker`, () => {
      const r = run(false, family);
      assert.deepEqual(
        r.steps.map((s) => [s.rcode, s.address ?? "-", s.lookups, s.hits, s.mark]),
        [
          [NOERROR, "10.0.0.53", 1, 0, 1],
          [NOERROR, "10.0.0.53", 2, 0, 1],
          [REFUSED, "-", 3, 0, 1],
          [NOERROR, "10.0.0.54", 4, 0, 1],
          [REFUSED, "-", 5, 0, 1],
          [REFUSED, "-", 6, 0, 1],
        ],
      );
      assertFresh(r);
    });
  }
});
