/** `membrane agent` service address flags: --service-cidr, --lb-pool, --node-port-range (lb/config.ts). */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { agentCommand } from "../../src/cli/commands/agent.js";
import { MembraneError } from "../../src/errors.js";
import { parseLbFlags } from "../../src/lb/config.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../../", import.meta.url)); // dist/test/lb -> the checkout

describe("agent flags for the service address pools", () => {
  test("defaults as Kubernetes': 10.96.0.0/16, no pool, 30000-32767; given values taken", () => {
    assert.deepEqual(parseLbFlags({}), { serviceCidr: "10.96.0.0/16", nodePortRange: [30000, 32767] });
    assert.deepEqual(
      parseLbFlags({ serviceCidr: "10.97.0.0/20", lbPool: "192.0.2.0/28", nodePortRange: "31000-31010" }),
      { serviceCidr: "10.97.0.0/20", loadBalancerPool: "192.0.2.0/28", nodePortRange: [31000, 31010] },
    );
    assert.deepEqual(parseLbFlags({ lbPool: "2001:db8:5::/112" }).loadBalancerPool, "2001:db8:5::/112");
    const dual = parseLbFlags({ lbPool: "2001:db8:5::/112, 192.0.2.0/24" });
    assert.equal(dual.loadBalancerPool, "2001:db8:5::/112");
    assert.equal(dual.loadBalancerPoolSecondary, "192.0.2.0/24");
  });

  const refused: { name: string; flags: Parameters<typeof parseLbFlags>[0]; flag: string; says: RegExp }[] = [
    {
      name: "not a CIDR",
      flags: { serviceCidr: "10.96.0.0" },
      flag: "--service-cidr",
      says: /not an IPv4 or IPv6 CIDR/,
    },
    { name: "two service CIDRs of one family", flags: { serviceCidr: "10.96.0.0/16,10.97.0.0/16" }, flag: "--service-cidr", says: /two CIDRs of one family/ }, // prettier-ignore
    { name: "three service CIDRs", flags: { serviceCidr: "10.96.0.0/16,fd00::/108,fd01::/108" }, flag: "--service-cidr", says: /more than two/ }, // prettier-ignore
    { name: "IPv6 service CIDR with no address", flags: { serviceCidr: "fd00::/127" }, flag: "--service-cidr", says: /holds no address/ }, // prettier-ignore
    { name: "LoadBalancer pool not a CIDR", flags: { lbPool: "fd00:1::" }, flag: "--lb-pool", says: /not an IPv4 or IPv6 CIDR/ }, // prettier-ignore
    { name: "two LoadBalancer pools of one family", flags: { lbPool: "fd00:1::/120,fd00:2::/120" }, flag: "--lb-pool", says: /two CIDRs of one family/ }, // prettier-ignore
    { name: "three LoadBalancer pools", flags: { lbPool: "192.0.2.0/24,fd00:1::/120,fd00:2::/120" }, flag: "--lb-pool", says: /more than two/ }, // prettier-ignore
    { name: "IPv6 pool inside the IPv6 service CIDR", flags: { serviceCidr: "10.96.0.0/16,fd00:96::/64", lbPool: "192.0.2.0/24,fd00:96::/112" }, flag: "--lb-pool", says: /fd00:96::\/112 overlaps --service-cidr fd00:96::\/64/ }, // prettier-ignore
    { name: "host bits set", flags: { serviceCidr: "10.96.0.1/16" }, flag: "--service-cidr", says: /did you mean|host bits/i }, // prettier-ignore
    {
      name: "too small to allocate",
      flags: { lbPool: "192.0.2.1/32" },
      flag: "--lb-pool",
      says: /no address/,
    },
    { name: "pool inside the service CIDR", flags: { lbPool: "10.96.4.0/24" }, flag: "--lb-pool", says: /overlaps --service-cidr/ }, // prettier-ignore
    { name: "service CIDR over the pods", flags: { serviceCidr: "10.0.0.0/8", podCidrs: ["10.200.0.0/24"] }, flag: "--service-cidr", says: /overlaps the pod CIDR/ }, // prettier-ignore
    { name: "pool over the pods", flags: { lbPool: "10.200.0.0/16", podCidrs: ["10.200.1.0/24"] }, flag: "--lb-pool", says: /overlaps the pod CIDR/ }, // prettier-ignore
    { name: "range reversed", flags: { nodePortRange: "32767-30000" }, flag: "--node-port-range", says: /not a port range/ }, // prettier-ignore
    { name: "range past 65535", flags: { nodePortRange: "30000-70000" }, flag: "--node-port-range", says: /not a port range/ }, // prettier-ignore
    { name: "range not a range", flags: { nodePortRange: "30000" }, flag: "--node-port-range", says: /not a port range/ }, // prettier-ignore
  ];
  for (const c of refused)
    test(`refused, naming the flag: ${c.name}`, () => {
      assert.throws(
        () => parseLbFlags(c.flags),
        (e: unknown) =>
          e instanceof MembraneError &&
          e.code === "CLI_USAGE" &&
          e.message.includes(c.flag) &&
          c.says.test(e.message) &&
          (e.hint ?? "").length > 0,
      );
    });

  test("the CLI refuses a bad flag before starting anything (exit 2, the flag and a hint on stderr); --help lists the flags", async () => {
    const r = await run(
      process.execPath,
      ["bin/membrane.js", "agent", "--node-port-range", "1-2-3", "--state-dir", "/nonexistent/hlb"],
      { cwd: ROOT },
    ).then(
      // prettier-ignore
      () => ({ code: 0, stderr: "" }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--node-port-range "1-2-3"/);
    assert.match(r.stderr, /hint: .*30000-32767/);
    const help = agentCommand({ out: () => undefined, err: () => undefined, version: "0", exitCode: 0 }).helpInformation(); // prettier-ignore
    assert.match(help, /--service-cidr <cidr>[\s\S]*--lb-pool <cidr>[\s\S]*--node-port-range <first-last>/);
  });
});
