/**
 * Workloads cannot reach the agent (needs root): `membrane endpoint exec`
 * against a real agent on a temp socket runs its command unprivileged, in a
 * mount namespace where the agent's socket and state are hidden; signals reach
 * the command; `membrane endpoint delete` stops what still runs inside.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { AgentClient } from "../../../src/agent/client.js";
import { netnsPids, WORKLOAD_ID_BASE } from "../../../src/datapath/workload.js";
import { ROOT } from "../../cli/run-cli.js";
import { AgentLab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

interface Run {
  readonly proc: ChildProcess;
  /** Resolves with the exit code (128+N for signal N) and the output. */
  readonly done: Promise<{ code: number; stdout: string; stderr: string }>;
  /** Resolves once stdout contains `text`. */
  until(text: string): Promise<void>;
  /** Standard output so far. */
  output(): string;
}

/** Runs the built CLI asynchronously (the in-process agent must keep answering). */
function membrane(args: readonly string[], opts: { cwd?: string } = {}): Run {
  const proc = spawn(process.execPath, [join(ROOT, "bin/membrane.js"), ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, WL_SECRET: "s3cret" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: { text: string; resolve: () => void }[] = [];
  proc.stdout?.on("data", (b: Buffer) => {
    stdout += b.toString("utf8");
    for (const w of waiters) if (stdout.includes(w.text)) w.resolve();
  });
  proc.stderr?.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
  const safety = setTimeout(() => proc.kill("SIGKILL"), 60_000); // a safety net, not a time bound
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    proc.on("exit", (code, signal) => {
      clearTimeout(safety);
      resolve({ code: code ?? (signal ? 128 + (signal === "SIGKILL" ? 9 : 0) : -1), stdout, stderr });
    });
  });
  return {
    proc,
    done,
    output: () => stdout,
    until: (text) =>
      new Promise<void>((resolve, reject) => {
        if (stdout.includes(text)) return resolve();
        waiters.push({ text, resolve });
        void done.then((r) => reject(new Error(`exited before printing "${text}": ${JSON.stringify(r)}`)));
      }),
  };
}

/** What the workload reports about itself and the agent's files, as key=value lines. */
const INSPECT = [
  'echo "uid=$(id -u)"',
  "echo \"capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)\"",
  "echo \"nonewprivs=$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)\"",
  'if [ -e "$1" ]; then echo socket=visible; else echo socket=hidden; fi',
  'if [ -e "$2" ]; then echo state=visible; else echo state=hidden; fi',
  'if socat -u /dev/null "UNIX-CONNECT:$1" 2>/dev/null; then echo connect=ok; else echo connect=failed; fi',
  'echo "secret=${WL_SECRET:-unset}"',
].join("\n");

function fields(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

describe("wl: workloads cannot reach the agent (root)", { skip: skip ?? false }, () => {
  test("endpoint exec runs the command unprivileged and blind to the agent; --privileged runs it as root", async () => {
    const lab = await AgentLab.start("wl");
    try {
      const app = await lab.endpoint("app", { app: "app" });
      const sock = lab.options.socketPath;
      const state = lab.options.stateDir;
      const inspect = (
        extra: string[],
        cwd?: string,
      ): Promise<{ code: number; stdout: string; stderr: string }> =>
        membrane(
          [
            "endpoint",
            "exec",
            "app",
            "--socket",
            sock,
            ...extra,
            "--",
            "sh",
            "-c",
            INSPECT,
            "inspect",
            sock,
            state,
          ],
          cwd !== undefined ? { cwd } : {},
        ).done;

      const plain = await inspect([]);
      assert.equal(plain.code, 0, plain.stderr);
      assert.deepEqual(fields(plain.stdout), {
        uid: String(WORKLOAD_ID_BASE + app.view.id),
        capeff: "0000000000000000",
        nonewprivs: "1",
        socket: "hidden",
        state: "hidden",
        connect: "failed",
        secret: "unset",
      });

      // uid 0 passes every file permission check: only the hiding keeps it from the socket.
      const asRoot = await inspect(["--user", "root"]);
      assert.equal(asRoot.code, 0, asRoot.stderr);
      assert.deepEqual(fields(asRoot.stdout), {
        uid: "0",
        capeff: "0000000000000000",
        nonewprivs: "1",
        socket: "hidden",
        state: "hidden",
        connect: "failed",
        secret: "unset",
      });
      // Started from inside the socket's directory, the workload's working directory is looked up again above the mount.
      const fromInside = await inspect(["--user", "root"], dirname(sock));
      assert.equal(fields(fromInside.stdout)["connect"], "failed", fromInside.stderr);
      const relative = await membrane(
        [
          "endpoint",
          "exec",
          "app",
          "--socket",
          sock,
          "--user",
          "root",
          "--",
          "sh",
          "-c",
          "ls -A; socat -u /dev/null UNIX-CONNECT:agent.sock",
        ],
        { cwd: dirname(sock) },
      ).done;
      assert.notEqual(relative.code, 0, "no relative path to the socket either");
      assert.equal(relative.stdout, "", "the working directory is the empty cover");

      const privileged = await inspect(["--privileged"]);
      assert.equal(privileged.code, 0, privileged.stderr);
      const p = fields(privileged.stdout);
      assert.equal(p["uid"], "0");
      assert.notEqual(p["capeff"], "0000000000000000", "--privileged keeps the capabilities");
      assert.equal(p["socket"], "visible");
      assert.equal(p["connect"], "ok");

      // The hiding stayed in the workload's mount namespace: the host still sees the socket.
      assert.ok(existsSync(sock));
      await new AgentClient({ socketPath: sock }).request("GET", "/v1/status");

      const both = await membrane([
        "endpoint",
        "exec",
        "app",
        "--socket",
        sock,
        "--privileged",
        "--user",
        "nobody",
        "--",
        "id",
      ]).done;
      assert.equal(both.code, 2);
      assert.match(both.stderr, /Cannot use --user with --privileged/);
      const unknown = await membrane([
        "endpoint",
        "exec",
        "app",
        "--socket",
        sock,
        "--user",
        "no-such-user-wl",
        "--",
        "id",
      ]).done;
      assert.equal(unknown.code, 2);
      assert.match(
        unknown.stderr,
        /Cannot run the workload as "no-such-user-wl": there is no user "no-such-user-wl"/,
      );
    } finally {
      await lab.destroy();
    }
  });

  test("workloads of different endpoints cannot ptrace or signal each other (own uid and gid per endpoint)", async () => {
    const lab = await AgentLab.start("wl");
    try {
      await lab.endpoint("a", { app: "a" });
      await lab.endpoint("b", { app: "b" });
      const sock = lab.options.socketPath;
      // Reading /proc/PID/environ needs ptrace access to PID; kill -0 needs the right to signal it.
      const probe = (
        pid: string,
        user: string[],
      ): Promise<{ code: number; stdout: string; stderr: string }> =>
        membrane([
          "endpoint",
          "exec",
          "a",
          "--socket",
          sock,
          ...user,
          "--",
          "sh",
          "-c",
          'if cat "/proc/$1/environ" >/dev/null 2>&1; then echo ptrace=ok; else echo ptrace=denied; fi; if kill -0 "$1" 2>/dev/null; then echo signal=ok; else echo signal=denied; fi',
          "probe",
          pid,
        ]).done;
      for (const [user, expect] of [
        [[], { ptrace: "denied", signal: "denied" }],
        // The control: with one shared user both work, which is why it is not the default.
        [["--user", "nobody"], { ptrace: "ok", signal: "ok" }],
      ] as const) {
        const victim = membrane([
          "endpoint",
          "exec",
          "b",
          "--socket",
          sock,
          ...user,
          "--",
          "sh",
          "-c",
          "echo pid=$$; exec sleep 1000",
        ]);
        await victim.until("\n");
        const pid = (/pid=(\d+)/.exec(victim.output()) ?? [])[1] ?? "";
        const r = await probe(pid, [...user]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(
          fields(r.stdout),
          expect,
          `from endpoint a ${user.join(" ") || "(own uid)"} to b's workload`,
        );
        victim.proc.kill("SIGTERM");
        await victim.done;
      }
    } finally {
      await lab.destroy();
    }
  });

  test("a signal sent to endpoint exec reaches the command; the exit code is the command's", async () => {
    const lab = await AgentLab.start("wl");
    const marks = await mkdtemp(join(tmpdir(), "membrane-wl-marks-"));
    try {
      await chmod(marks, 0o777); // the workload runs as the endpoint's own uid
      await lab.endpoint("app", { app: "app" });
      const sock = lab.options.socketPath;
      for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"] as const) {
        const name = sig.slice(3);
        const mark = join(marks, name);
        const run = membrane([
          "endpoint",
          "exec",
          "app",
          "--socket",
          sock,
          "--",
          "sh",
          "-c",
          `trap 'echo got > "$1"; exit 7' ${name}; echo ready; while :; do sleep 0.05; done`,
          "trap",
          mark,
        ]);
        await run.until("ready");
        run.proc.kill(sig);
        const r = await run.done;
        assert.equal(r.code, 7, `${sig}: the command's own exit code (${r.stderr})`);
        assert.equal(await readFile(mark, "utf8"), "got\n", `${sig} reached the command`);
      }
      // Killed by a signal: 128 + N, as shells report it.
      const sleeper = membrane([
        "endpoint",
        "exec",
        "app",
        "--socket",
        sock,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
      ]);
      await sleeper.until("ready");
      sleeper.proc.kill("SIGTERM");
      assert.equal((await sleeper.done).code, 143);
    } finally {
      await rm(marks, { recursive: true, force: true });
      await lab.destroy();
    }
  });

  test("endpoint delete stops the processes still inside, after a grace period for those that ignore SIGTERM", async () => {
    const lab = await AgentLab.start("wl");
    try {
      const sock = lab.options.socketPath;
      const a = await lab.agent.createEndpointRequest({
        name: "a",
        namespace: "default",
        labels: { app: "a" },
      });
      const b = await lab.agent.createEndpointRequest({
        name: "b",
        namespace: "default",
        labels: { app: "b" },
      });

      const polite = membrane([
        "endpoint",
        "exec",
        "a",
        "--socket",
        sock,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
      ]);
      await polite.until("ready");
      assert.equal((await netnsPids(a.netns)).length, 1);
      const del = await membrane(["endpoint", "delete", "a", "--socket", sock]).done;
      assert.equal(del.code, 0, del.stderr);
      assert.equal(del.stdout, "endpoint default/a deleted (stopped 1 process)\n");
      assert.equal((await polite.done).code, 143, "the sleeper got SIGTERM");
      assert.equal(existsSync(join("/run/netns", a.netns)), false);

      // SIG_IGN is inherited across exec: both the shell and its sleep ignore SIGTERM.
      const stubborn = membrane([
        "endpoint",
        "exec",
        "b",
        "--socket",
        sock,
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 1000 & echo ready; wait",
      ]);
      await stubborn.until("ready");
      const del2 = await membrane(["endpoint", "delete", "b", "--socket", sock, "--grace-period", "1"]).done;
      assert.equal(del2.code, 0, del2.stderr);
      assert.equal(del2.stdout, "endpoint default/b deleted (stopped 2 processes)\n");
      assert.equal((await stubborn.done).code, 137, "SIGKILL after the grace period");
      assert.deepEqual(await netnsPids(b.netns), []);
      assert.deepEqual(lab.agent.listEndpoints(), []);

      const bad = await membrane(["endpoint", "delete", "x", "--socket", sock, "--grace-period", "1h"]).done;
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /Cannot read --grace-period "1h": write whole seconds, 0-300/);
      assert.ok(existsSync(dirname(sock)));
    } finally {
      await lab.destroy();
    }
  });
});
