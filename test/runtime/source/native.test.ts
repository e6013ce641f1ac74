/**
 * The native process event source on the real kernel (needs root): our raw tracepoint programs,
 * loaded by dist/bin/membrane-exec-events, report exec (arguments, cwd, binary, parent, uid,
 * netns), fork and exit of real processes; threads are not forks; a reader that falls behind
 * loses records in the kernel, counted; the choice between sources is made by loading.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { describe, test } from "node:test";
import { isMembraneError } from "../../../src/errors.js";
import type { ProcessRecord } from "../../../src/runtime/source/assemble.js";
import { NativeSource } from "../../../src/runtime/source/native.js";
import { startProcessSource } from "../../../src/runtime/source/select.js";
import { until } from "../../support/until.js";

const skip = process.getuid?.() === 0 ? undefined : "needs root (BPF)";

function status(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return "";
  }
}

function run(cmd: string, args: string[], cwd = "/"): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { cwd, stdio: "ignore" });
    c.once("exit", () => resolve(c.pid ?? 0));
  });
}

describe("native process event source (needs root)", { skip }, () => {
  test("exec with arguments, cwd, parent and netns; fork; exit codes and signals; no fork for threads", async () => {
    const recs: ProcessRecord[] = [];
    const src = new NativeSource({ onRecord: (r) => recs.push(r), onDrop: () => undefined });
    await src.start();
    try {
      const marker = `hrt-${process.pid}-${Date.now()}`;
      const shPid = await run("sh", [
        "-c",
        `cd /usr/share && /bin/echo ${marker} "a b" >/dev/null; (exit 5); kill -9 $$`,
        marker,
      ]);
      await until("the echo's exec", () =>
        recs.some((r) => r.kind === "exec" && r.argv[0] === "/bin/echo" && r.argv[1] === marker),
      );
      const sh = recs.find((r) => r.kind === "exec" && r.pid === shPid);
      assert.ok(sh?.kind === "exec");
      assert.equal(sh.ppid, process.pid);
      assert.deepEqual(sh.argv.slice(0, 2), ["sh", "-c"]);
      assert.equal(sh.cwd, "/");
      assert.equal(sh.uid, 0);
      assert.equal(sh.netns, Number(/\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/net"))?.[1]));
      const echo = recs.find((r) => r.kind === "exec" && r.argv[1] === marker);
      assert.ok(echo?.kind === "exec");
      assert.deepEqual(echo.argv, ["/bin/echo", marker, "a b"]);
      assert.equal(echo.cwd, "/usr/share");
      assert.ok(echo.cwdComplete);
      assert.equal(echo.binary, "/bin/echo");
      assert.equal(echo.ppid, shPid);
      await until("the sh's exit", () => recs.some((r) => r.kind === "exit" && r.pid === shPid));
      const shExit = recs.find((r) => r.kind === "exit" && r.pid === shPid);
      assert.ok(shExit?.kind === "exit");
      assert.equal(shExit.code, 9, "killed by SIGKILL: wait status 9");
      // the subshell `(exit 5)`: a fork of sh, exit status 5 << 8
      const forks = recs.filter((r) => r.kind === "fork" && r.ppid === shPid).map((r) => r.pid);
      assert.ok(forks.length >= 1, "sh forked");
      assert.ok(recs.some((r) => r.kind === "exit" && forks.includes(r.pid) && r.code === 5 << 8));

      // node starts threads (libuv, V8): none of them is a fork of its process
      const nodePid = await run(process.execPath, ["-e", "setTimeout(() => {}, 100)"]);
      await until("node's exit", () => recs.some((r) => r.kind === "exit" && r.pid === nodePid));
      assert.deepEqual(
        recs.filter((r) => r.kind === "fork" && r.ppid === nodePid),
        [],
        "a thread was reported as a process",
      );
    } finally {
      await src.stop();
    }
    assert.equal(src.pid, undefined, "the loader exited with its stdin");
  });

  test("a reader that falls behind: the ring fills and the kernel's losses are counted", async () => {
    let got = 0;
    let lost = 0;
    const src = new NativeSource({
      ringBytes: 16384,
      onRecord: () => void got++,
      onDrop: (why, n) => void (why === "lost" ? (lost += n) : undefined),
    });
    await src.start();
    try {
      src.pauseReading(true);
      spawnSync("sh", ["-c", "for i in $(seq 200); do /bin/true; done"]);
      src.pauseReading(false);
      await until("the lost count", () => lost > 0);
      assert.ok(src.counts.lost > 0);
    } finally {
      await src.stop();
    }
  });

  test("the loader dies with its agent (agent SIGKILLed: its stdin closes, PDEATHSIG), its programs with it", async () => {
    const native = new URL("../../../src/runtime/source/native.js", import.meta.url).href;
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { NativeSource } = await import(${JSON.stringify(native)});
         const s = new NativeSource({ onRecord: () => {}, onDrop: () => {} });
         await s.start(); console.log(s.pid); setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      let out = "";
      holder.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      await until("the holder's loader", () => /^\d+\n/.test(out));
      const loader = Number(out.trim());
      assert.ok(existsSync(`/proc/${loader}`));
      holder.kill("SIGKILL");
      await until(
        "the loader's exit",
        () => !existsSync(`/proc/${loader}`) || /State:\s+Z/.test(status(loader)),
      );
    } finally {
      holder.kill("SIGKILL");
    }
  });

  test("selection by loading: native refused (no loader) -> the fallback is tried, both reasons named", async () => {
    const base = { onRecord: () => undefined, onDrop: () => undefined, loader: "/nonexistent/hrt-loader" };
    await assert.rejects(startProcessSource({ ...base, prefer: "native" }), (e) => {
      assert.ok(isMembraneError(e));
      assert.equal(e.code, "RUNTIME_SOURCE_FAILED");
      assert.match(e.message, /hrt-loader is missing/);
      return true;
    });
    let told = "";
    await assert.rejects(
      startProcessSource({
        ...base,
        bpftrace: "/nonexistent/hrt-bpftrace",
        canary: false,
        onFallback: (w) => (told = w),
      }),
      (e) => {
        assert.ok(isMembraneError(e));
        assert.match(e.message, /native: .*hrt-loader is missing; bpftrace: /);
        return true;
      },
    );
    assert.match(told, /hrt-loader/);
  });
});
