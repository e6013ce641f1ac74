import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";
import { FIXTURES } from "../policy/fixtures.js";
import { catIn, collector, Netns, prefix, runtimeSkipReason, until } from "./helpers.js";

const skip = runtimeSkipReason();
const here = dirname(fileURLToPath(import.meta.url));

describe("runtime enforcer lifetime and the translation table on this kernel (root)", { skip }, () => {
  for (const mode of ["native", "bpftrace"] as const) {
    const loader = mode === "native" ? "membrane-syscall-guard" : "bpftrace";
    test(`an agent killed with SIGKILL leaves no program that kills: its ${loader} dies with it`, async () => {
      const a = Netns.add(`${prefix()}-a`);
      const holder = spawn(process.execPath, [join(here, "holder.js"), String(a.inode), mode], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      try {
        await new Promise<void>((resolve, reject) => {
          let out = "";
          holder.stdout.setEncoding("utf8").on("data", (d: string) => {
            out += d;
            if (out.includes("READY")) resolve();
          });
          holder.once("exit", (c) => reject(new Error(`holder exited ${String(c)}`)));
        });
        const bt = spawnSync("pgrep", ["-P", String(holder.pid), "-f", loader], { encoding: "utf8" })
          .stdout.split("\n")
          .filter(Boolean);
        assert.equal(bt.length, 1, `one ${loader}, a child of the agent`);
        assert.equal((await catIn(a.name, "/etc/shadow")).rc, 137);
        holder.kill("SIGKILL");
        await until(
          `${loader} to die`,
          () => !existsSync(`/proc/${bt[0]}`) || /State:\s*Z/.test(safeRead(`/proc/${bt[0]}/status`)),
        );
        const r = await catIn(a.name, "/etc/shadow");
        assert.equal(r.rc, 0, "nothing kills once the agent is gone");
        assert.match(r.out, /^root:/);
      } finally {
        holder.kill("SIGKILL");
        a.del();
      }
    });
  }

  test("every policy fixture Membrane accepts also loads on this kernel (Post only, node-wide, then removed)", async () => {
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      let loaded = 0;
      for (const f of FIXTURES.filter((x) => x.want === "loads")) {
        for (const p of parseTracingPolicies(f.yaml, `${f.name}.yaml`)) {
          const st = await enf.apply(p);
          assert.equal(st.state, "loaded", `${f.name}: ${st.error ?? ""}`);
          await enf.remove(p);
          loaded++;
        }
      }
      assert.ok(loaded >= 6, `${loaded} examples loaded`);
    } finally {
      await enf.stop();
    }
  });
});

function safeRead(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}
