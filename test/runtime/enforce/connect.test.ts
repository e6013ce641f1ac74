/**
 * Connection denial per workload: TracingPolicies on tcp_connect and
 * security_socket_connect served by cgroup connect4/connect6 programs on the
 * selected endpoints' cgroups (real namespaces, real cgroups, real sockets).
 * Namespaces and cgroups are named `cn<hex>-...` and removed in `finally`.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ensureEndpointCgroup } from "../../../src/datapath/endpoint-cgroup.js";
import { workloadArgv } from "../../../src/datapath/workload.js";
import { LabelSet } from "../../../src/labels/label.js";
import { RuntimeEnforcer, type EnforcerEndpoint } from "../../../src/runtime/enforce/enforcer.js";
import { collector, policy, runtimeSkipReason, until } from "./helpers.js";
import { randomBytes } from "node:crypto";

const skip = runtimeSkipReason();
const here = dirname(fileURLToPath(import.meta.url));
const GUARD = fileURLToPath(new URL("../../../bin/membrane-connect-guard", import.meta.url));

/** A namespace with loopback up, its endpoint cgroup, and listeners on two ports counting accepts. */
class Pod {
  readonly cgroup: string;
  private readonly listener: ChildProcess;
  accepted = "";
  private constructor(
    readonly name: string,
    readonly labels: Record<string, string>,
  ) {
    spawnSync("ip", ["netns", "add", name]);
    spawnSync("ip", ["-n", name, "link", "set", "lo", "up"]);
    const cg = ensureEndpointCgroup(name);
    if (!cg) throw new Error("no cgroup2 mount");
    this.cgroup = cg;
    // Prints the local port of every accepted connection: a refused connect() never reaches it.
    const py =
      "import socket,select,sys\n" +
      "ls=[]\n" +
      "for p in (8080,8081):\n" +
      " s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',p));s.listen(64);ls.append(s)\n" +
      "print('up',flush=True)\n" +
      "while True:\n" +
      " for s in select.select(ls,[],[])[0]:\n" +
      "  c,_=s.accept();print(s.getsockname()[1],flush=True);c.close()\n";
    this.listener = spawn("ip", ["netns", "exec", name, "python3", "-c", py], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    this.listener.stdout?.setEncoding("utf8").on("data", (d: string) => (this.accepted += d));
  }
  static async add(tag: string, labels: Record<string, string>): Promise<Pod> {
    const p = new Pod(`cn${randomBytes(3).toString("hex")}-${tag}`, labels);
    await until("the listener", () => p.accepted.includes("up"));
    return p;
  }
  get endpoint(): EnforcerEndpoint {
    return {
      key: `default/${this.name}`,
      labels: LabelSet.fromMap({ ...this.labels, "io.kubernetes.pod.namespace": "default" }),
      netnsInode: Number(
        spawnSync("stat", ["-L", "-c", "%i", `/run/netns/${this.name}`], { encoding: "utf8" }).stdout,
      ),
      cgroup: this.cgroup,
    };
  }
  /** connect() from a process in the namespace and (unless `outside`) in the endpoint's cgroup. */
  connect(
    port: number,
    outside = false,
    host = "127.0.0.1",
    linger = false,
  ): Promise<{ out: string; code: number | null; signal: string | null }> {
    const fam = host.includes(":") ? "socket.AF_INET6" : "socket.AF_INET";
    // linger: stay a while after a refused connect, so that a kill sent after the refusal is seen.
    const after = linger ? "\n import time; time.sleep(30)" : "";
    const py = `import socket\ns=socket.socket(${fam})\ntry:\n s.connect(('${host}',${port}));print('connected')\nexcept OSError as e:\n print('errno',e.errno,flush=True)${after}`;
    const cmd = ["python3", "-c", py];
    const argv = outside
      ? ["ip", "netns", "exec", this.name, ...cmd]
      : workloadArgv(this.name, cmd, { privileged: true }, this.cgroup);
    return new Promise((resolve) => {
      const c = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      c.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
      c.once("close", (code, signal) => resolve({ out: out.trim(), code, signal }));
    });
  }
  del(): void {
    this.listener.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", this.name]);
    for (let i = 0; i < 50 && existsSync(this.cgroup); i++) {
      try {
        rmdirSync(this.cgroup);
      } catch {
        spawnSync("sleep", ["0.1"]);
      }
    }
  }
}

const DENY_8081 = (action: string, name = "no-8081"): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${name}}
spec:
  podSelector: {matchLabels: {app: client}}
  kprobes:
  - call: tcp_connect
    syscall: false
    args: [{index: 0, type: sock}]
    selectors:
    - matchArgs:
      - {index: 0, operator: DAddr, values: [127.0.0.0/8]}
      - {index: 0, operator: DPort, values: [8081]}
      matchActions: [${action}]
`;

/** This process's connect guards (its children: another test file's guards come and go meanwhile). */
function guards(): string[] {
  return spawnSync("pgrep", ["-P", String(process.pid), "-x", "membrane-connec"], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean);
}

describe("connection denial per workload: cgroup connect4/6 (root)", { skip }, () => {
  test("Override(-EPERM) refuses the selected endpoint's connect before any packet; others and other ports connect; the event names the policy", async () => {
    const a = await Pod.add("a", { app: "client" });
    const b = await Pod.add("b", { app: "other" });
    const c = collector();
    const enf = new RuntimeEnforcer({ sink: c.sink });
    try {
      await enf.setEndpoints([a.endpoint, b.endpoint]);
      const st = await enf.apply(policy(DENY_8081("{action: Override, argError: -1}")));
      assert.equal(st.state, "loaded", st.error);
      assert.deepEqual(await a.connect(8081), { out: "errno 1", code: 0, signal: null });
      assert.equal((await a.connect(8080)).out, "connected");
      assert.equal((await b.connect(8081)).out, "connected", "an unselected endpoint is not refused");
      assert.equal(
        (await a.connect(8081, true)).out,
        "connected",
        "a process outside the endpoint's cgroup is not covered",
      );
      await until("the refusal event", () => c.events.length >= 1);
      const e = c.events[0];
      assert.equal(e?.type, "process_kprobe");
      assert.equal(e?.functionName, "tcp_connect");
      assert.equal(e?.policyName, "no-8081");
      assert.equal(e?.action, "KPROBE_ACTION_OVERRIDE");
      assert.deepEqual(e?.args[0]?.sock, {
        family: "AF_INET",
        protocol: "IPPROTO_TCP",
        daddr: "127.0.0.1",
        dport: 8081,
      });
      assert.equal(e?.netnsInode, a.endpoint.netnsInode);
      assert.equal(e?.comm, "python3");
      assert.equal(c.events.length, 1, "only the refused connect is reported");
      // Accepted: the 8080 of a, the 8081 of b (other pod), the 8081 from outside the cgroup. Never a's refused 8081.
      // A client's connect completes in the kernel's backlog before the listener accepts and prints:
      // wait for the two lines the accepted connections owe, then compare exactly.
      const ports = (): string[] => a.accepted.split("\n").filter((l) => /^\d+$/.test(l));
      await until("the listener printing both accepted connections", () => ports().length >= 2);
      assert.deepEqual(ports().sort(), ["8080", "8081"]);
      assert.ok(await enf.remove(policy(DENY_8081("{action: Override}"))));
      assert.equal((await a.connect(8081)).out, "connected", "deleting the policy detaches its programs");
    } finally {
      await enf.stop();
      a.del();
      b.del();
    }
  });

  test("Sigkill: the connect is refused and the process killed (exit by SIGKILL), reported as KPROBE_ACTION_SIGKILL", async () => {
    const a = await Pod.add("k", { app: "client" });
    const c = collector();
    const enf = new RuntimeEnforcer({ sink: c.sink });
    try {
      await enf.setEndpoints([a.endpoint]);
      assert.equal((await enf.apply(policy(DENY_8081("{action: Sigkill}")))).state, "loaded");
      // The connect() fails with EPERM at once; the kill follows from the loader (a cgroup program
      // cannot signal), so the process lingers after the refusal for the kill to be seen.
      const r = await a.connect(8081, false, "127.0.0.1", true);
      assert.equal(r.signal, "SIGKILL");
      assert.notEqual(r.out, "connected"); // what it printed before the kill landed varies
      await until("the kill event", () => c.events.length >= 1);
      assert.equal(c.events[0]?.action, "KPROBE_ACTION_SIGKILL");
      assert.equal(c.events[0]?.signal, 9);
      assert.doesNotMatch(a.accepted, /8081/, "no connection reached the listener");
      await enf.stop();
      assert.equal((await a.connect(8081)).out, "connected", "stopping the enforcer (agent stop) detaches");
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("security_socket_connect (sockaddr SAddr/SPort = the destination) refuses by family and port; connect6 refused by an IPv6 DAddr", async () => {
    const a = await Pod.add("s", { app: "client" });
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint]);
      const p = policy(`apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: sock-connect}
spec:
  podSelector: {matchLabels: {app: client}}
  kprobes:
  - call: security_socket_connect
    args: [{index: 1, type: sockaddr}]
    selectors:
    - matchArgs:
      - {index: 1, operator: Family, values: [AF_INET]}
      - {index: 1, operator: SPort, values: [8080]}
      matchActions: [{action: Override, argError: -1}]
`);
      assert.equal((await enf.apply(p)).state, "loaded");
      assert.equal((await a.connect(8080)).out, "errno 1");
      assert.equal((await a.connect(8081)).out, "connected");
      // IPv6 is not AF_INET: not refused (nothing listens on ::1, hence ECONNREFUSED, not EPERM).
      assert.equal((await a.connect(8080, false, "::1")).out, "errno 111");
      const v6 = policy(DENY_8081("{action: Override}", "v6").replace("127.0.0.0/8", '"::1/128"'));
      assert.equal((await enf.apply(v6)).state, "loaded");
      assert.equal((await a.connect(8081, false, "::1")).out, "errno 1", "connect6 refused by DAddr ::1");
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("a policy that fails to load leaves nothing attached (connect guard stopped when its syscall-guard half fails)", async () => {
    const a = await Pod.add("f", { app: "client" });
    const enf = new RuntimeEnforcer({
      sink: collector().sink,
      syscallGuard: "native",
      syscallGuardBinary: "/nonexistent/membrane-syscall-guard",
      loadTimeoutMs: 60_000,
    });
    try {
      await enf.setEndpoints([a.endpoint]);
      const before = guards().length;
      const mixed = policy(
        DENY_8081("{action: Override}", "mixed") +
          `  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Post}]
`,
      );
      await assert.rejects(
        enf.apply(mixed),
        (e: Error & { code?: string }) => e.code === "RUNTIME_ENFORCER_FAILED",
      );
      assert.equal((await a.connect(8081)).out, "connected", "the connect guard half was detached");
      await until("the guard process to exit", () => guards().length <= before);
      // An endpoint without a cgroup: named error, nothing attached.
      const { key, labels, netnsInode } = a.endpoint;
      const bare: EnforcerEndpoint = { key, labels, netnsInode };
      await enf.setEndpoints([bare]);
      await assert.rejects(enf.apply(policy(DENY_8081("{action: Override}", "bare"))), /has none/);
      assert.equal((await a.connect(8081)).out, "connected");
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("an agent killed with SIGKILL takes its connect programs with it (nothing refuses without an agent to report it)", async () => {
    const a = await Pod.add("h", { app: "client" });
    const holder = spawn(
      process.execPath,
      [join(here, "connect-holder.js"), JSON.stringify(a.endpoint), GUARD],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        let out = "";
        holder.stdout?.setEncoding("utf8").on("data", (d: string) => {
          out += d;
          if (out.includes("READY")) resolve();
        });
        holder.once("exit", (code) => reject(new Error(`holder exited ${String(code)}`)));
      });
      const g = spawnSync("pgrep", ["-P", String(holder.pid), "-x", "membrane-connec"], { encoding: "utf8" })
        .stdout.split("\n")
        .filter(Boolean);
      assert.equal(g.length, 1, "one connect guard, a child of the agent");
      // Least privilege: CAP_KILL (5), CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39), nothing else.
      assert.match(read(`/proc/${g[0]}/status`), /CapEff:\s*000000c000001020\n/);
      assert.equal((await a.connect(8081)).out, "errno 1");
      holder.kill("SIGKILL");
      await until(
        "the guard to die",
        () => !existsSync(`/proc/${g[0]}`) || /State:\s*Z/.test(read(`/proc/${g[0]}/status`)),
      );
      assert.equal((await a.connect(8081)).out, "connected", "its links went with it");
    } finally {
      holder.kill("SIGKILL");
      a.del();
    }
  });
});

function read(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}
