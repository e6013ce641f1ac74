import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces, nftables)" : undefined;

test(
  "membrane demo: Star Wars L3/L4 on real packets, then everything is removed",
  { skip, timeout: 60_000 },
  () => {
    const r = spawnSync(process.execPath, ["bin/membrane.js", "demo"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const out = r.stdout;
    const prefix = /scratch node namespace (mbd[0-9a-f]{4})-node/.exec(out)?.[1];
    assert.ok(prefix, out);
    assert.match(
      out,
      /tiefighter\s+deathstar:80\/TCP\s+reached\s+allowed by default\/rule1 spec\.ingress\[0\]/,
    );
    assert.match(
      out,
      /xwing\s+deathstar:80\/TCP\s+DROPPED\s+ingress of default\/deathstar: default deny, no rule allows it/,
    );
    assert.match(out, /tiefighter\s+deathstar:8080\/TCP\s+DROPPED/);
    assert.match(out, /Kernel vs desired state: in sync/);
    if (spawnSync("sh", ["-c", "command -v bpftrace"]).status === 0) {
      assert.match(out, /deathstar\s+cat \/etc\/shadow\s+137 \(SIGKILL\)\s+nothing/);
      assert.match(out, /xwing\s+cat \/etc\/shadow\s+0\s+\d+ lines \(not shown\)/);
      assert.match(out, /KPROBE_ACTION_SIGKILL policy=deathstar-no-shadow __x64_sys_openat\(\/etc\/shadow\)/);
    }
    assert.match(out, /Every attempt ended as Cilium would have it\./);
    // Only this run's prefix: other demos (test/cli/demo-nodes.test.ts, run alongside) make and
    // remove "mbd" namespaces of their own meanwhile, so a machine-wide count would race them.
    const after = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    assert.ok(!after.includes(prefix), `namespaces of ${prefix} left behind:\n${after}`);
  },
);
