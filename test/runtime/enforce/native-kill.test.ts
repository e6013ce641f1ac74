/**
 * The syscall guard (our own sys_enter program, no bpftrace) on real
 * processes in endpoint namespaces: what it kills, what each selector
 * matches, and what the killed syscall still did (kill-prog.ts says it).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { isMembraneError } from "../../../src/errors.js";
import {
  catIn,
  collector,
  Netns,
  policy,
  prefix,
  runtimeSkipReason,
  SHADOW_KILL,
  shIn,
  until,
} from "./helpers.js";

const skip = runtimeSkipReason();

const kprobe = (name: string, body: string): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${name}}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
${body}`;

async function withVictim(
  f: (ctx: {
    a: Netns;
    b: Netns;
    enf: RuntimeEnforcer;
    events: ReturnType<typeof collector>["events"];
    dir: string;
  }) => Promise<void>,
  params: Partial<ConstructorParameters<typeof RuntimeEnforcer>[0]> = {},
): Promise<void> {
  const px = prefix();
  const a = Netns.add(`${px}-a`);
  const b = Netns.add(`${px}-b`);
  const dir = mkdtempSync(join(tmpdir(), `${px}-`));
  const { events, sink } = collector();
  const enf = new RuntimeEnforcer({ sink, syscallGuard: "native", ...params });
  try {
    await enf.setEndpoints([a.endpoint({ app: "victim" }), b.endpoint({ app: "other" })]);
    await f({ a, b, enf, events, dir });
  } finally {
    await enf.stop();
    a.del();
    b.del();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("syscall guard: Sigkill from our own sys_enter program (root)", { skip }, () => {
  test("cat /etc/shadow is killed (137, nothing printed) with no bpftrace; the event names the policy, binary and path", async () => {
    await withVictim(async ({ a, b, enf, events }) => {
      const st = await enf.apply(policy(SHADOW_KILL()));
      assert.deepEqual(st.programs, ["syscall-guard"]);
      assert.deepEqual(await catIn(a.name, "/etc/shadow"), { out: "", rc: 137 });
      assert.equal((await catIn(b.name, "/etc/shadow")).rc, 0, "an unselected endpoint");
      assert.equal((await catIn(undefined, "/etc/shadow")).rc, 0, "the host");
      assert.equal((await catIn(a.name, "/etc/hostname")).rc, 0, "another file");
      await until("the kill event", () => events.length > 0);
      assert.equal(events.length, 1);
      const e = events[0];
      assert.equal(e?.action, "KPROBE_ACTION_SIGKILL");
      assert.equal(e?.signal, 9);
      assert.equal(e?.functionName, "__x64_sys_openat");
      assert.equal(e?.policyName, "no-shadow");
      assert.equal(e?.comm, "cat");
      assert.equal(e?.netnsInode, a.inode);
      assert.deepEqual(e?.args, [{ index: 1, type: "string", label: undefined, value: "/etc/shadow" }]);
      assert.equal(enf.list()[0]?.kills, 1);
    });
  });

  test("what the killed syscall still did: openat(O_CREAT) created the file, write(2) wrote nothing, an execve'd program never ran", async () => {
    await withVictim(async ({ a, enf, dir }) => {
      await enf.apply(
        policy(
          kprobe(
            "effects",
            `  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Postfix, values: [/created-then-killed]}]
      matchActions: [{action: Sigkill}]
  - call: sys_write
    syscall: true
    args: [{index: 0, type: int}, {index: 2, type: size_t}]
    selectors:
    - matchArgs: [{index: 2, operator: Equal, values: [17]}]
      matchActions: [{action: Sigkill}]
  - call: sys_execve
    syscall: true
    args: [{index: 0, type: string}]
    selectors:
    - matchArgs: [{index: 0, operator: Postfix, values: [bin/touch]}]
      matchActions: [{action: Sigkill}]
`,
          ),
        ),
      );
      const created = join(dir, "created-then-killed");
      assert.equal((await shIn(a.name, `: > ${created}`)).rc, 137);
      assert.ok(existsSync(created), "openat ran to completion: the file exists");
      const written = join(dir, "written");
      // The shell opens the file (allowed), then write(2)s 17 bytes: killed at its entry.
      assert.equal((await shIn(a.name, `printf 'hrt-16-bytes-dat\\n' > ${written}`)).rc, 137);
      assert.equal(statSync(written).size, 0, "write(2) wrote nothing");
      const marker = join(dir, "marker");
      assert.equal((await shIn(a.name, `exec /usr/bin/touch ${marker}`)).rc, 137);
      assert.equal(existsSync(marker), false, "the exec'd program never ran");
    });
  });

  test("Postfix on a 300-byte path, matchBinaries In, and an int Mask (writes only)", async () => {
    await withVictim(async ({ a, enf, events, dir }) => {
      const deep = join(dir, "d".repeat(120), "e".repeat(120));
      assert.equal(
        (await shIn(a.name, `mkdir -p ${deep} && echo k > ${deep}/id.key && echo ok`)).out,
        "ok\n",
      );
      await enf.apply(
        policy(
          kprobe(
            "selectors",
            `  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}, {index: 2, type: int}]
    selectors:
    - matchArgs: [{index: 1, operator: Postfix, values: [.key]}]
      matchActions: [{action: Sigkill}]
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/hostname]}]
      matchBinaries: [{operator: In, values: [/usr/bin/cat]}]
      matchActions: [{action: Sigkill}]
    - matchArgs:
      - {index: 1, operator: Prefix, values: [${dir}/]}
      - {index: 2, operator: Mask, values: [3]}
      matchActions: [{action: Signal, argSig: 10}]
`,
          ),
        ),
      );
      assert.ok(`${deep}/id.key`.length > 256);
      assert.equal((await catIn(a.name, `${deep}/id.key`)).rc, 137, "Postfix past 256 bytes");
      assert.equal((await catIn(a.name, "/etc/hostname")).rc, 137, "cat is in matchBinaries");
      const head = await shIn(a.name, "head -c 3 /etc/hostname >/dev/null");
      assert.equal(head.rc, 0, "head is not");
      assert.equal(
        (await shIn(a.name, `cat ${dir}/../hrt-none 2>/dev/null; echo x > ${dir}/w`)).rc,
        138,
        "SIGUSR1 on a write open",
      );
      assert.equal(
        (await shIn(a.name, `cat ${deep}/../x 2>/dev/null; true`)).rc,
        0,
        "a read open under the prefix passes",
      );
      await until("three events", () => events.length >= 3);
      const sig = events.find((e) => e.action === "KPROBE_ACTION_SIGNAL");
      assert.equal(sig?.signal, 10);
      assert.equal(sig?.args[0]?.value, `${dir}/w`);
      assert.ok(Number(sig?.args[1]?.value) & 1, `flags ${sig?.args[1]?.value ?? ""} has O_WRONLY`);
      const long = events.find(
        (e) => e.args[0]?.value?.endsWith("d") || (e.args[0]?.value?.length ?? 0) >= 255,
      );
      assert.equal(long?.args[0]?.value?.length, 255, "events carry the first 255 bytes of a longer path");
    });
  });

  test("matchNamespaces, matchPIDs NotIn and matchCapabilities select in the kernel; Post only kills nothing", async () => {
    await withVictim(async ({ a, enf, events }) => {
      await enf.apply(
        policy(
          kprobe(
            "process-selectors",
            `  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/hostname]}]
      matchNamespaces: [{namespace: Net, operator: In, values: ["${a.inode}"]}]
      matchPIDs: [{operator: NotIn, values: [1]}]
      matchCapabilities: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN]}]
      matchActions: [{action: Sigkill}]
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/os-release]}]
      matchActions: [{action: Post}]
`,
          ),
        ),
      );
      assert.equal(
        (await catIn(a.name, "/etc/hostname")).rc,
        137,
        "root with CAP_SYS_ADMIN in the namespace",
      );
      const dropped = await shIn(
        a.name,
        "setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin -- cat /etc/hostname >/dev/null",
      );
      assert.equal(dropped.rc, 0, "without CAP_SYS_ADMIN");
      assert.equal((await catIn(a.name, "/etc/os-release")).rc, 0, "Post kills nothing");
      await until("the post event", () => events.some((e) => e.action === "KPROBE_ACTION_POST"));
    });
  });

  test("matchParentBinaries (cat under sh, not under ip) and followForks (descendants of a shell started before the policy)", async () => {
    await withVictim(async ({ a, enf }) => {
      // A shell that exists before the policy: followed through the /proc seed, its cat through fork and exec.
      const holder = spawn(
        "ip",
        ["netns", "exec", a.name, "sh", "-c", 'read x; cat /etc/os-release >/dev/null; echo "rc=$?"'],
        {
          stdio: ["pipe", "pipe", "ignore"],
        },
      );
      try {
        await new Promise((r) => setTimeout(r, 300));
        await enf.apply(
          policy(
            kprobe(
              "parents",
              `  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/hostname]}]
      matchParentBinaries: [{operator: In, values: [/usr/bin/sh]}]
      matchActions: [{action: Sigkill}]
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/os-release]}]
      matchPIDs: [{operator: In, followForks: true, values: [${holder.pid ?? 0}]}]
      matchActions: [{action: Sigkill}]
`,
            ),
          ),
        );
        assert.equal((await catIn(a.name, "/etc/hostname")).rc, 137, "cat's parent is /usr/bin/sh");
        const direct = spawnSync("ip", ["netns", "exec", a.name, "cat", "/etc/hostname"]);
        assert.equal(direct.status, 0, "cat exec'd by ip: its parent is not sh");
        assert.equal(
          (await catIn(a.name, "/etc/os-release")).rc,
          0,
          "a shell not descending from the followed PID",
        );
        let out = "";
        holder.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        const closed = new Promise((r) => holder.once("close", r));
        holder.stdin.end("go\n");
        await closed;
        assert.equal(out, "rc=137\n", "the followed shell's child was killed");
      } finally {
        holder.kill("SIGKILL");
      }
    });
  });

  test("setuid and namespace-change events from a workload (Post): setresuid's ids and unshare's flags, nothing killed", async () => {
    await withVictim(async ({ a, enf, events }) => {
      await enf.apply(
        policy(
          kprobe(
            "privileges",
            `  - call: sys_setresuid
    syscall: true
    args: [{index: 0, type: int}, {index: 1, type: int}, {index: 2, type: int}]
  - call: sys_unshare
    syscall: true
    args: [{index: 0, type: int}]
`,
          ),
        ),
      );
      assert.equal((await shIn(a.name, "setpriv --reuid=65534 --regid=65534 --clear-groups true")).rc, 0);
      assert.equal((await shIn(a.name, "unshare --uts true")).rc, 0);
      // `ip netns exec` itself unshares its mount namespace (CLONE_NEWNS) in the endpoint: seen too.
      const uts = String(0x04000000);
      await until("unshare(CLONE_NEWUTS)", () =>
        events.some((e) => e.functionName === "__x64_sys_unshare" && e.args[0]?.value === uts),
      );
      const su = events.find((e) => e.functionName === "__x64_sys_setresuid");
      assert.deepEqual(
        su?.args.map((x) => x.value),
        ["65534", "65534", "65534"],
      );
      assert.equal(su?.action, "KPROBE_ACTION_POST");
      assert.ok(
        events.every((e) => e.netnsInode === a.inode),
        "only the selected endpoint's processes",
      );
    });
  });

  test("a guard that cannot load hands its probes to bpftrace (auto) and says why; native alone refuses", async () => {
    await withVictim(
      async ({ a, enf }) => {
        const st = await enf.apply(policy(SHADOW_KILL()));
        assert.deepEqual(st.programs, ["bpftrace"]);
        assert.match(st.fallback ?? "", /syscall guard .*missing/);
        assert.equal((await catIn(a.name, "/etc/shadow")).rc, 137);
      },
      { syscallGuard: "auto", syscallGuardBinary: "/nonexistent/membrane-syscall-guard" },
    );
    await withVictim(
      async ({ a, enf }) => {
        await assert.rejects(
          enf.apply(policy(SHADOW_KILL())),
          (e) => isMembraneError(e) && e.code === "RUNTIME_ENFORCER_FAILED",
        );
        assert.equal((await catIn(a.name, "/etc/shadow")).rc, 0, "nothing attached");
      },
      { syscallGuardBinary: "/nonexistent/membrane-syscall-guard" },
    );
  });
});
