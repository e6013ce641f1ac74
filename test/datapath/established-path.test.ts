/**
 * The rules an established packet of an endpoint meets in the node, read from
 * the kernel's own trace (`meta nftrace`, `nft monitor trace`), with real
 * packets on a real connection (needs root). The table is the compiler's;
 * the trace switch is a table of the test's, in the test's node namespace.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import type { PolicySegment } from "../../src/datapath/types.js";
import { Lab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();
const A = 1001;
const allow80 = (identity: number): PolicySegment => ({
  identity,
  proto: 6,
  lo: 80,
  hi: 80,
  action: "allow",
  ruleId: 1,
});

/** Trace lines of table `table`, per trace id, of packets sent while `send` runs. */
async function traced(
  netns: string,
  table: string,
  send: () => Promise<void>,
): Promise<Map<string, string[]>> {
  const mon = spawn("ip", ["netns", "exec", netns, "nft", "monitor", "trace"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  mon.stdout.on("data", (d: Buffer) => (out += d.toString()));
  try {
    // The monitor subscribes asynchronously: send until a traced packet reaches the table
    // (the loop bound is only a safety net).
    for (let i = 0; i < 100 && !out.includes(` inet ${table} pre_c `); i++) {
      await send();
      await new Promise((r) => setTimeout(r, 50));
    }
    await send();
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    mon.kill();
  }
  // A trace id comes from the packet's buffer address, which the kernel reuses: a "packet:" line starts a
  // new packet even under an id seen before (two packets under one id looked like one packet, twice).
  const traces = new Map<string, string[]>();
  const packetOf = new Map<string, string>();
  for (const line of out.split("\n")) {
    const m = /^trace id (\S+) inet (\S+) (.*)$/.exec(line);
    if (!m || m[2] !== table) continue;
    const id = m[1] as string;
    const rest = m[3] as string;
    if (/^\S+ packet: /.test(rest) || !packetOf.has(id)) packetOf.set(id, `${id}#${traces.size}`);
    const key = packetOf.get(id) as string;
    traces.set(key, [...(traces.get(key) ?? []), rest]);
  }
  return traces;
}

describe(
  "the established path of an endpoint's packets (root: netns, nftables, nftrace)",
  { skip: skip ?? false },
  () => {
    let lab: Lab;
    before(async () => {
      lab = await Lab.create(
        "ep",
        [
          { name: "a", id: 1, identity: A },
          { name: "b", id: 2, identity: 1002 },
        ],
        { tcp: [80] },
      );
      await lab.reconciler.apply(
        lab.state({
          a: { egress: { enforced: true, segments: [allow80(1002)] } },
          b: { ingress: { enforced: true, segments: [allow80(A)] } },
        }),
      );
    });
    after(async () => {
      await lab?.destroy();
    });

    for (const fam of ["IPv4", "IPv6"] as const) {
      test(`${fam}: an established packet from an endpoint's own address is accepted by one lookup, with no jump into its chain`, async () => {
        const [a, b] = [lab.ep("a"), lab.ep("b")];
        const [src, dst] = fam === "IPv4" ? [a.ipv4, b.ipv4] : [a.ipv6, b.ipv6];
        const conn = `est${fam}`;
        assert.equal(await a.open(conn, dst, 80), "ok");
        const ip = fam === "IPv4" ? "ip" : "ip6";
        const script = [
          "add table inet trace_on",
          "add chain inet trace_on pre { type filter hook prerouting priority -175; }",
          `add rule inet trace_on pre ${ip} saddr ${src} tcp dport 80 ct state established meta nftrace set 1`,
        ].join("\n");
        const r = await runRaw(["nft", "-f", "-"], { netns: lab.node.netns, stdin: script + "\n" });
        assert.equal(r.stderr, "");
        try {
          const traces = await traced(lab.node.netns, "membrane", async () => {
            assert.equal(await a.send(conn), "ok");
          });
          const paths = [...traces.values()]
            .map((lines) =>
              lines
                .filter((l) => / rule /.test(l))
                .map((l) => l.replace(/^(\S+) rule /, "$1: ").replace(/ comment "[^"]*"/, "")),
            )
            .filter((p) => p.length > 0);
          assert.ok(paths.length > 0, "no traced packet reached the table");
          // nft lists the rule without its `meta nfproto` (a dependency of `ip saddr` it elides).
          const n = fam === "IPv4" ? 4 : 6;
          const est = `ct state established,related iifname . ${ip} saddr vmap @egress_est${n} (verdict accept)`;
          for (const p of paths) assert.deepEqual(p, [`pre_c: ${est}`]);
        } finally {
          await runRaw(["nft", "delete", "table", "inet", "trace_on"], { netns: lab.node.netns });
        }
      });
    }
  },
);
