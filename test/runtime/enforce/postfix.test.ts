/**
 * matchArgs Postfix / NotPostfix on a syscall's path, in the kernel: the
 * string's length found by a bounded loop of 1-byte reads, its tail compared.
 * Real processes in a scratch network namespace.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { catIn, collector, Netns, policy, prefix, runtimeSkipReason, until } from "./helpers.js";

const skip = runtimeSkipReason();

const SUFFIX = (operator: string, value: string, action: string): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: suffix-${operator.toLowerCase()}}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: ${operator}, values: [${value}]}]
      matchBinaries: [{operator: In, values: [/usr/bin/cat]}]
      matchActions: [{action: ${action}}]
`;

describe("runtime enforcer: Postfix on a path (root)", { skip }, () => {
  test("Postfix kills every path that ends with the value, however it is spelled; NotPostfix posts the others", async () => {
    const ns = Netns.add(`rg${prefix()}-a`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      await enf.setEndpoints([ns.endpoint({ app: "victim" })]);
      assert.equal((await enf.apply(policy(SUFFIX("Postfix", "/shadow", "Sigkill")))).state, "loaded");
      assert.deepEqual(await catIn(ns.name, "/etc/shadow"), { out: "", rc: 137 });
      // Another spelling of the same file: an Equal match would miss it, the suffix does not.
      assert.deepEqual(await catIn(ns.name, "/etc/../etc/./shadow"), { out: "", rc: 137 });
      // A path whose end differs, and one shorter than the value, are untouched.
      assert.equal((await catIn(ns.name, "/etc/hostname")).rc, 0);
      assert.equal((await catIn(ns.name, "/etc/shadow-")).rc, 0);
      assert.equal((await catIn(ns.name, "/")).rc, 1);
      // Outside the selected endpoint: untouched.
      assert.equal((await catIn(undefined, "/etc/shadow")).rc, 0);

      await enf.apply(policy(SUFFIX("NotPostfix", "/shadow", "Post")));
      await catIn(ns.name, "/etc/hostname");
      await until("the NotPostfix event for /etc/hostname", () =>
        events.some((e) => e.policyName === "suffix-notpostfix" && e.args[0]?.value === "/etc/hostname"),
      );
      const killed = events.filter((e) => e.policyName === "suffix-postfix").map((e) => e.args[0]?.value);
      assert.ok(killed.includes("/etc/shadow") && killed.includes("/etc/../etc/./shadow"), String(killed));
      assert.ok(
        !events.some(
          (e) => e.policyName === "suffix-notpostfix" && /\/shadow$/.test(String(e.args[0]?.value)),
        ),
      );
    } finally {
      await enf.stop();
      ns.del();
    }
  });
});
