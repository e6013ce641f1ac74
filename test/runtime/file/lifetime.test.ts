import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Netns, until } from "../enforce/helpers.js";
import { faPrefix, fanotifySkipReason, respondersOf, sh } from "./helpers.js";

const skip = fanotifySkipReason();
const here = dirname(fileURLToPath(import.meta.url));

describe("fanotify responder lifetime (root)", { skip }, () => {
  test("an agent killed with SIGKILL takes its responder along: nothing stays denied, nothing hangs", async () => {
    const px = faPrefix();
    const dir = `/tmp/${px}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/secret`, "s3cret\n");
    const a = Netns.add(`${px}-a`);
    const holder = spawn(process.execPath, [join(here, "holder.js"), String(a.inode), `${dir}/secret`], {
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
      const [pid] = respondersOf(holder.pid ?? 0);
      assert.ok(pid, "one responder, a child of the agent");
      assert.equal((await sh(a.name, 'cat "$1"', `${dir}/secret`)).code, 1);
      holder.kill("SIGKILL");
      await until(
        "the responder to die",
        () => !existsSync(`/proc/${pid}`) || /State:\s*Z/.test(safeRead(`/proc/${pid}/status`)),
      );
      const r = await sh(a.name, 'cat "$1"', `${dir}/secret`);
      assert.deepEqual([r.code, r.out], [0, "s3cret\n"], "nothing denies once the agent is gone");
    } finally {
      holder.kill("SIGKILL");
      a.del();
      spawnSync("rm", ["-rf", dir]);
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
