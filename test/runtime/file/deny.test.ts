import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, linkSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { policyEventToRuntime } from "../../../src/agent/controllers/runtime-bridge.js";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { RuntimeMetrics } from "../../../src/runtime/metrics.js";
import { collector, Netns, policy, until } from "../enforce/helpers.js";
import { DENY_FILE, faPrefix, fanotifySkipReason, respondersOf, sh } from "./helpers.js";

const skip = fanotifySkipReason();
const CAT = 'cat "$1"';

function scratch(px: string): { dir: string; secret: string; done(): void } {
  const dir = `/tmp/${px}`;
  mkdirSync(dir);
  writeFileSync(`${dir}/secret`, "s3cret\n");
  // rm -rf, not rmSync: the hostile-names test leaves a tree deeper than PATH_MAX.
  return { dir, secret: `${dir}/secret`, done: () => void spawnSync("rm", ["-rf", dir]) };
}

describe("runtime enforcer: file access denied through fanotify (root)", { skip }, () => {
  test("cat of a denied file fails with EPERM in the selected endpoint and prints nothing; another endpoint, the host and the export", async () => {
    const px = faPrefix();
    const s = scratch(px);
    const a = Netns.add(`${px}-a`);
    const b = Netns.add(`${px}-b`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" }), b.endpoint({ app: "other" })]);
      const st = await enf.apply(policy(DENY_FILE("security_file_permission", "Equal", [s.secret])));
      assert.equal(st.state, "loaded", st.error);
      assert.equal(st.endpoints, 1);
      const denied = await sh(a.name, CAT, s.secret);
      assert.equal(denied.code, 1);
      assert.equal(denied.out, "", "nothing printed");
      assert.match(denied.err, /Operation not permitted/);
      assert.equal((await sh(b.name, CAT, s.secret)).out, "s3cret\n", "another endpoint reads it");
      assert.equal((await sh(undefined, CAT, s.secret)).out, "s3cret\n", "the host reads it");
      // The object, not the name: a hard link elsewhere names the same inode.
      mkdirSync(`${s.dir}-l`);
      linkSync(s.secret, `${s.dir}-l/alias`);
      const viaLink = await sh(a.name, CAT, `${s.dir}-l/alias`);
      assert.equal(viaLink.code, 1, "a hard link to the denied file is denied too");
      assert.equal(viaLink.out, "");
      await until("two denial events", () => events.length >= 2);
      const e = events[0];
      assert.equal(e?.policyName, "deny-secret");
      assert.equal(e?.functionName, "security_file_permission");
      assert.equal(e?.action, "KPROBE_ACTION_OVERRIDE");
      assert.equal(e?.netnsInode, a.inode);
      assert.equal(e?.comm, "cat");
      assert.deepEqual(e?.args[0]?.value, s.secret);
      assert.equal(events[1]?.args[0]?.value, `${s.dir}-l/alias`);
      assert.ok(
        events.every((x) => x.netnsInode === a.inode),
        "no event from the other endpoint or the host",
      );
      assert.equal(enf.list()[0]?.denials, 2);
      // Into the Tetragon export, counted in tetragon_policy_events_total.
      const metrics = new RuntimeMetrics();
      const out = policyEventToRuntime(e!, { push: () => undefined, processOf: () => undefined }, "node-1");
      metrics.observe(out);
      assert.ok("process_kprobe" in out);
      const k = out.process_kprobe;
      assert.equal(k.function_name, "security_file_permission");
      assert.equal(k.action, "KPROBE_ACTION_OVERRIDE");
      assert.equal(k.policy_name, "deny-secret");
      assert.deepEqual(k.args, [{ file_arg: { path: s.secret } }]);
      assert.equal(k.process.binary, "cat");
      assert.match(
        await metrics.registry.metrics(),
        /tetragon_policy_events_total\{policy="deny-secret",hook="security_file_permission",[^}]*\} 1/,
      );
    } finally {
      await enf.stop();
      a.del();
      b.del();
      s.done();
      rmSync(`${s.dir}-l`, { recursive: true, force: true });
    }
  });

  test("security_file_permission: an fd the host opened and handed to the endpoint is denied at read; one opened before the policy is not", async () => {
    const px = faPrefix();
    const s = scratch(px);
    const a = Netns.add(`${px}-a`);
    mkdirSync(`${s.dir}-f`);
    const fifo = `${s.dir}-f/go`;
    const marker = `${s.dir}-f/opened`;
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await sh(undefined, 'mkfifo "$1"', fifo);
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      // Opened before the policy, read after it (waiting on a FIFO outside the marked directory).
      const early = sh(a.name, 'exec 3< "$1"; : > "$3"; read x < "$2"; cat <&3', s.secret, fifo, marker);
      await until("the early reader to open the file", () => existsSync(marker));
      const st = await enf.apply(policy(DENY_FILE("security_file_permission", "Equal", [s.secret])));
      assert.equal(st.state, "loaded", st.error);
      // The host opens (allowed: not selected), the endpoint's cat reads the inherited fd.
      const handed = await sh(undefined, 'exec 3< "$1"; exec ip netns exec "$2" cat <&3', s.secret, a.name);
      assert.deepEqual([handed.code, handed.out], [1, ""], "FAN_ACCESS_PERM denies the read");
      assert.match(handed.err, /Operation not permitted/);
      await sh(undefined, 'echo go > "$1"', fifo);
      // This kernel (6.14+) decides at open whether a file will ever raise permission events
      // (FMODE_NONOTIFY_PERM when no watcher existed): a file opened before the policy is not seen.
      assert.equal((await early).out, "s3cret\n");
    } finally {
      // A reader left waiting on the FIFO (the test failed before "go") would keep this file running.
      spawnSync("timeout", ["5", "sh", "-c", 'echo go > "$1"', "sh", fifo]);
      await enf.stop();
      a.del();
      s.done();
      rmSync(`${s.dir}-f`, { recursive: true, force: true });
    }
  });

  test("the real /etc/shadow: denied to the selected endpoint (security_file_open), readable by the host", async () => {
    const px = faPrefix();
    const a = Netns.add(`${px}-a`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      const st = await enf.apply(policy(DENY_FILE("security_file_open", "Equal", ["/etc/shadow"])));
      assert.equal(st.state, "loaded", st.error);
      const r = await sh(a.name, CAT, "/etc/shadow");
      assert.deepEqual([r.code, r.out], [1, ""]);
      assert.match(r.err, /Operation not permitted/);
      assert.match((await sh(undefined, CAT, "/etc/shadow")).out, /^root:/);
      assert.equal((await sh(a.name, CAT, "/etc/hostname")).code, 0, "other files of /etc are readable");
      await until("the denial event", () => events.length > 0);
      assert.equal(events[0]?.args[0]?.value, "/etc/shadow");
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("the responder killed with SIGKILL: no access hangs, the host and the endpoint read again, the policy says error", async () => {
    const px = faPrefix();
    const s = scratch(px);
    const a = Netns.add(`${px}-a`);
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(policy(DENY_FILE("security_file_permission", "Prefix", [`${s.dir}/`])));
      assert.equal((await sh(a.name, CAT, s.secret)).code, 1);
      const [pid] = respondersOf(process.pid);
      assert.ok(pid, "one responder, a child of the agent");
      process.kill(pid, "SIGKILL");
      await until("the policy to report the responder's end", () => enf.list()[0]?.state === "error");
      assert.match(enf.list()[0]?.error ?? "", /fanotify responder exited \(SIGKILL\)/);
      assert.equal((await sh(undefined, CAT, s.secret)).out, "s3cret\n");
      assert.equal((await sh(a.name, CAT, s.secret)).out, "s3cret\n", "nothing is denied once it is gone");
    } finally {
      await enf.stop();
      a.del();
      s.done();
    }
  });

  test("hostile names under a denied prefix (newline, non-UTF-8, longer than PATH_MAX) are denied and reported on one bounded line", async () => {
    const px = faPrefix();
    const s = scratch(px);
    const a = Netns.add(`${px}-a`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      writeFileSync(`${s.dir}/a\nb`, "nl\n");
      writeFileSync(Buffer.from(`${s.dir}/\xff\xfe`, "latin1"), "bytes\n");
      // 24 levels of 200 characters: a path the kernel cannot name in one page (perl: dash's cd
      // stops at PATH_MAX, chdir(2) with one component does not).
      const mk =
        'chdir $ARGV[0] or die; for (1..24) { mkdir $ARGV[1]; chdir $ARGV[1] or die } open F, ">f"; print F "deep\\n"';
      assert.equal((await sh(undefined, 'perl -e "$3" "$1" "$2"', s.dir, "d".repeat(200), mk)).code, 0);
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(policy(DENY_FILE("security_file_open", "Prefix", [`${s.dir}/`])));
      assert.equal((await sh(a.name, CAT, `${s.dir}/a\nb`)).code, 1);
      const raw = await sh(a.name, `cat "$(printf '%s/\\377\\376' "$1")"`, s.dir);
      assert.deepEqual([raw.code, raw.out], [1, ""]);
      const walk = `perl -e 'chdir $ARGV[0] or die; for (1..24) { chdir $ARGV[1] or die } exec "cat", "f"' "$1" "$2"`;
      const long = await sh(a.name, walk, s.dir, "d".repeat(200));
      assert.deepEqual([long.code, long.out], [1, ""], "a path too long to name is denied (fail closed)");
      assert.equal((await sh(undefined, walk, s.dir, "d".repeat(200))).out, "deep\n", "the host reads it");
      await until("three denial events", () => events.length >= 3);
      const paths = events.map((e) => e.args[0]?.value);
      assert.deepEqual(paths.slice(0, 2), [`${s.dir}/a\\x0ab`, `${s.dir}/\\xff\\xfe`]);
      assert.equal(paths[2], undefined, "no path for the unnameable one");
      assert.ok(paths.every((p) => p === undefined || !p.includes("\n")));
    } finally {
      await enf.stop();
      a.del();
      s.done();
    }
  });
});
