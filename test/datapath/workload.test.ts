/**
 * The workload launcher's pure parts: users, hidden directories, argv,
 * environment. (The launch itself is tested for real in
 * test/agent/e2e/workload.test.ts.)
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  endpointWorkloadUser,
  hiddenDirectories,
  resolveWorkloadUser,
  workloadArgv,
  workloadEnv,
  WORKLOAD_ID_BASE,
} from "../../src/datapath/workload.js";
import { isMembraneError } from "../../src/errors.js";

const DEFAULTS = ["/run/membrane", "/var/lib/membrane", "/etc/membrane"];

describe("wl: workload launcher", () => {
  test("users: names, numbers, the primary group by default; unknown or malformed ones are refused", () => {
    const nobody = resolveWorkloadUser("nobody");
    assert.equal(nobody.uid, 65534);
    assert.notEqual(nobody.gid, 0, "the primary group, never root's by accident");
    assert.equal(nobody.name, "nobody");
    assert.deepEqual(
      { ...resolveWorkloadUser("5000:5001"), spec: "" },
      { uid: 5000, gid: 5001, name: "5000", home: "/", spec: "" },
    );
    assert.equal(resolveWorkloadUser("root").uid, 0);
    for (const [spec, why] of [
      ["5000", /uid 5000 has no passwd entry, so it has no primary group; name one \(5000:GROUP\)/],
      ["no-such-user-wl", /there is no user "no-such-user-wl"/],
      ["nobody:no-such-group-wl", /there is no group "no-such-group-wl"/],
      ["a:b:c", /not USER\[:GROUP\]/],
      ["-rf", /not USER\[:GROUP\]/],
      ["nobody:", /not USER\[:GROUP\]/],
      ["4294967295:1", /ids must be/],
    ] as const) {
      assert.throws(
        () => resolveWorkloadUser(spec),
        (e: unknown) => isMembraneError(e) && e.code === "CLI_USAGE" && why.test(e.message),
        spec,
      );
    }
  });

  test("by default an endpoint's workloads get a uid and gid of their own, outside the passwd and group files", () => {
    assert.deepEqual(endpointWorkloadUser({ id: 5, name: "web" }), {
      uid: 0x70000005,
      gid: 0x70000005,
      name: String(0x70000005),
      home: "/",
      spec: `${0x70000005}:${0x70000005}`,
    });
    assert.equal(WORKLOAD_ID_BASE, 1879048192);
    assert.notEqual(
      endpointWorkloadUser({ id: 1, name: "a" }).uid,
      endpointWorkloadUser({ id: 2, name: "b" }).uid,
    );
    assert.throws(
      () => endpointWorkloadUser({ id: 2 ** 24, name: "big" }),
      (e: unknown) =>
        isMembraneError(e) &&
        e.code === "WORKLOAD_ISOLATION_FAILED" &&
        /id 16777216 is outside/.test(e.message),
    );
  });

  test("hidden directories: the socket's and the state's, symlinks resolved, nested ones once, system ones refused", () => {
    const base = mkdtempSync(join(tmpdir(), "membrane-wl-"));
    try {
      mkdirSync(join(base, "run"));
      mkdirSync(join(base, "run", "state"));
      symlinkSync(join(base, "run"), join(base, "link"));
      const mine = (dirs: string[]): string[] => dirs.filter((d) => !DEFAULTS.includes(d));
      assert.deepEqual(
        mine(hiddenDirectories(join(base, "link", "agent.sock"), join(base, "run", "state"))),
        [join(base, "run")],
      );
      assert.deepEqual(
        mine(hiddenDirectories(join(base, "gone", "agent.sock"))),
        [],
        "nothing there to hide",
      );
      for (const sock of ["/agent.sock", "/tmp/agent.sock", "/var/lib/agent.sock"]) {
        assert.throws(
          () => hiddenDirectories(sock),
          (e: unknown) =>
            isMembraneError(e) &&
            e.code === "WORKLOAD_ISOLATION_FAILED" &&
            /is a system directory/.test(e.message),
          sock,
        );
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test("argv: privileged is plain ip netns exec; otherwise every path and id is an argument, not script text", () => {
    assert.deepEqual(workloadArgv("ns1", ["id", "-u"], { privileged: true }), [
      "ip",
      "netns",
      "exec",
      "ns1",
      "id",
      "-u",
    ]);
    const user = { uid: 65534, gid: 65534, name: "nobody", home: "/nonexistent", spec: "nobody" };
    const argv = workloadArgv("ns1", ["sh", "-c", "echo $HOME"], { user, hide: ["/run/x y", "/var/lib/m"] });
    assert.deepEqual(argv.slice(0, 6), ["ip", "netns", "exec", "ns1", "sh", "-c"]);
    assert.deepEqual(argv.slice(7), [
      "membrane-workload",
      "65534",
      "65534",
      "/usr/local/bin:/usr/bin:/bin",
      "2",
      "/run/x y",
      "/var/lib/m",
      "sh",
      "-c",
      "echo $HOME",
    ]);
    assert.doesNotMatch(argv[6] ?? "", /\/run\/x|65534/);
    assert.throws(() => workloadArgv("ns1", [], { privileged: true }), /no command given/);
  });

  test("environment: reset as sudo does, the terminal and locale kept", () => {
    const user = { uid: 65534, gid: 65534, name: "nobody", home: "/nonexistent", spec: "nobody" };
    assert.deepEqual(
      workloadEnv(user, {
        TERM: "xterm",
        LANG: "C.UTF-8",
        LC_ALL: "C",
        AWS_SECRET_ACCESS_KEY: "x",
        HOME: "/root",
        PATH: "/root/bin",
      }),
      {
        TERM: "xterm",
        LANG: "C.UTF-8",
        LC_ALL: "C",
        PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        HOME: "/nonexistent",
        USER: "nobody",
        LOGNAME: "nobody",
      },
    );
  });
});
