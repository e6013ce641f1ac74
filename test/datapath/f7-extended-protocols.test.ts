/**
 * f7 (issue 10 item 5 g): the extended IP protocols Cilium accepts in toPorts
 * (GRE, ESP, ...) are enforced by protocol number in the kernel. Real GRE and
 * ESP packets through a node namespace (needs root); IPv4 and IPv6.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { PolicySegment } from "../../src/datapath/types.js";
import { Lab, rootSkipReason } from "./harness.js";
import { until } from "../support/until.js";

const skip = rootSkipReason();
const A = 1001;
const B = 1002;
const C = 1003;
const GRE = 47;
const ESP = 50;

// What the engine compiles `toPorts: [{ports: [{protocol: GRE}]}]` to (see
// test/agent/f7-redirect-segments.test.ts): the protocol with every "port".
const allow = (identity: number, proto: number): PolicySegment => ({
  identity,
  proto,
  lo: 0,
  hi: 65535,
  action: "allow",
  ruleId: 1,
});

/** A GRE header (no flags, protocol type IPv4) and a few bytes; an ESP SPI, sequence number and bytes. */
const GRE_PACKET = Buffer.from([0, 0, 0x08, 0x00, 1, 2, 3, 4]);
const ESP_PACKET = Buffer.from([0, 0, 0x10, 0x01, 0, 0, 0, 1, 9, 9, 9, 9]);

describe(
  "f7 extended IP protocols in the datapath (root: netns, nftables, raw GRE/ESP packets)",
  {
    skip: skip ?? false,
  },
  () => {
    let lab: Lab;
    before(async () => {
      lab = await Lab.create("f7xp", [
        { name: "a", id: 1, identity: A },
        { name: "b", id: 2, identity: B },
        { name: "c", id: 3, identity: C },
      ]);
      // b admits GRE from a and ESP from c, nothing else.
      await lab.reconciler.apply(
        lab.state({ b: { ingress: { enforced: true, segments: [allow(A, GRE), allow(C, ESP)] } } }),
      );
    });
    after(async () => {
      await lab?.destroy();
    });

    for (const fam of ["IPv4", "IPv6"] as const) {
      const ip = (name: string): string => (fam === "IPv4" ? lab.ep(name).ipv4 : lab.ep(name).ipv6);
      const saddr = fam === "IPv4" ? "ip saddr" : "ip6 saddr";

      test(`${fam}: GRE allowed by protocol number arrives; GRE from another identity and ESP from the GRE peer are dropped`, async () => {
        const b = lab.ep("b");
        const tag = fam === "IPv4" ? "4" : "6";
        await b.addCounter(`gre_a${tag}`, `${saddr} ${ip("a")} meta l4proto ${GRE}`);
        await b.addCounter(`esp_a${tag}`, `${saddr} ${ip("a")} meta l4proto ${ESP}`);
        await b.addCounter(`gre_c${tag}`, `${saddr} ${ip("c")} meta l4proto ${GRE}`);
        await b.addCounter(`esp_c${tag}`, `${saddr} ${ip("c")} meta l4proto ${ESP}`);

        // Dropped ones first, each followed on the same path by an allowed one.
        await lab.ep("a").raw(ip("b"), ESP, ESP_PACKET);
        await lab.ep("c").raw(ip("b"), GRE, GRE_PACKET);
        await lab.ep("a").raw(ip("b"), GRE, GRE_PACKET);
        await lab.ep("c").raw(ip("b"), ESP, ESP_PACKET);
        await until("a's GRE packet", async () => (await b.readCounter(`gre_a${tag}`)) > 0);
        await until("c's ESP packet", async () => (await b.readCounter(`esp_c${tag}`)) > 0);
        assert.equal(await b.readCounter(`esp_a${tag}`), 0, "ESP from a is not allowed (only GRE is)");
        assert.equal(await b.readCounter(`gre_c${tag}`), 0, "GRE from c is not allowed (only ESP is)");
      });
    }
  },
);
