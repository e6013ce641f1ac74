/**
 * The DNS proxy's ct id rule (compile-nat.ts dnsIdRules): which datagrams get their conntrack
 * entry's id as packet mark, and that the rule's chain comes after every input chain of the
 * node's table that reads the packet mark (a ct id must never pass for PKT_AUTH_OK or an
 * identity). Pure: the rule's behaviour on real packets is test/proxy/dns-ct-id.test.ts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compile } from "../../src/datapath/compile.js";
import { DNS_ID_PRIORITY } from "../../src/datapath/compile-nat.js";
import type { DatapathState } from "../../src/datapath/types.js";

const proxy = { ipv4: "10.200.0.1", ipv6: "fd00:200::1", l7Port: 15001, dnsPort: 15053, gid: 1337 };
const open = { enforced: false, segments: [] };

function state(p: Partial<DatapathState> = {}): DatapathState {
  return { hostIdentity: 1, rules: [], ipcache: [], endpoints: [], proxy, ...p };
}

const hookOf = (base: string | undefined): { hook: string; priority: number } | undefined => {
  const m = /hook (\w+) priority (-?\d+)/.exec(base ?? "");
  return m ? { hook: m[1] as string, priority: Number(m[2]) } : undefined;
};

describe("dns_id_c: the ct id of datagrams redirected to the DNS proxy", () => {
  test("UDP to the proxy's DNS port and address, redirected, in each family", () => {
    const t = compile(state(), { table: "mt" });
    const c = t.chains.find((x) => x.name === "dns_id_c");
    assert.equal(c?.base, `type filter hook input priority ${DNS_ID_PRIORITY}; policy accept;`);
    assert.deepEqual(c?.rules, [
      "ip daddr 10.200.0.1 udp dport 15053 ct mark & 0x40000000 != 0 meta mark set ct id",
      // Not redirected (sent to the proxy's address itself): no id, and no identity left in the mark.
      "ip daddr 10.200.0.1 udp dport 15053 ct mark & 0x40000000 == 0 meta mark set 0",
      "ip6 daddr fd00:200::1 udp dport 15053 ct mark & 0x40000000 != 0 meta mark set ct id",
      "ip6 daddr fd00:200::1 udp dport 15053 ct mark & 0x40000000 == 0 meta mark set 0",
    ]);
  });
  test("several workers: every live worker's port; one family only: that family's rule", () => {
    const t = compile(state({ proxy: { ipv4: proxy.ipv4, l7Port: 15001, dnsPort: 15053, dnsPorts: [15053, 15054], gid: 1337 } }), { table: "mt" }); // prettier-ignore
    assert.deepEqual(t.chains.find((x) => x.name === "dns_id_c")?.rules, [
      "ip daddr 10.200.0.1 udp dport { 15053, 15054 } ct mark & 0x40000000 != 0 meta mark set ct id",
      "ip daddr 10.200.0.1 udp dport { 15053, 15054 } ct mark & 0x40000000 == 0 meta mark set 0",
    ]);
  });
  test("no proxy: no chain", () => {
    const { proxy: _p, ...rest } = state();
    assert.equal(
      compile(rest, { table: "mt" }).chains.find((x) => x.name === "dns_id_c"),
      undefined,
    );
  });
  test("after every other input chain of the table (auth gate, host firewall), and after the auth table's (-5, -6)", () => {
    const t = compile(
      state({
        auth: true,
        host: {
          ingress: { enforced: true, segments: [{ identity: 0, proto: 6, lo: 22, hi: 22, action: "allow", ruleId: 1 }] }, // prettier-ignore
          egress: open,
        },
      }),
      { table: "mt" },
    );
    const inputs = t.chains
      .filter((c) => c.name !== "dns_id_c")
      .map((c) => ({ name: c.name, h: hookOf(c.base) }))
      .filter((c) => c.h?.hook === "input");
    assert.deepEqual(inputs.map((c) => c.name).sort(), ["auth_gate_in", "hfw_in_c"]);
    for (const c of inputs) assert.ok((c.h?.priority ?? 0) < DNS_ID_PRIORITY, c.name);
    assert.ok(DNS_ID_PRIORITY > -5);
  });
});
