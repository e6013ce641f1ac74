/**
 * `membrane uninstall` checks every input before it changes anything, and
 * deletes only a state directory laid out as the agent writes it (needs
 * root: a node namespace with a table and a route, and an endpoint
 * namespace, made here under a unique prefix).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { MembraneError } from "../../src/errors.js";
import { uninstall, type UninstallParams } from "../../src/agent/uninstall.js";
import { rootSkipReason } from "../datapath/harness.js";

const prefix = "mh5" + randomBytes(3).toString("hex");
const node = `${prefix}-node`;
const table = `t${prefix}`;

async function sh(argv: string[]): Promise<void> {
  const r = await runRaw(argv);
  assert.equal(r.status, 0, `${argv.join(" ")}: ${r.stderr}`);
}

/** A node namespace with the agent's table and blackhole route, and one endpoint namespace. */
async function buildLab(): Promise<void> {
  await sh(["ip", "netns", "add", node]);
  await sh(["ip", "netns", "add", `${prefix}-e1`]);
  await sh(["ip", "netns", "exec", node, "nft", "add", "table", "inet", table]);
  await sh(["ip", "netns", "exec", node, "ip", "link", "set", "lo", "up"]);
  await sh(["ip", "netns", "exec", node, "ip", "route", "add", "blackhole", "10.201.0.0/24"]);
}

/** What of the lab is still there: table, route, namespaces. */
async function labState(): Promise<string[]> {
  const out: string[] = [];
  if ((await runRaw(["ip", "netns", "exec", node, "nft", "list", "table", "inet", table])).status === 0)
    out.push("table");
  const routes = await runRaw(["ip", "netns", "exec", node, "ip", "route", "show", "type", "blackhole"]);
  if (routes.stdout.includes("10.201.0.0/24")) out.push("route");
  for (const n of await listNetns()) if (n.startsWith(prefix)) out.push(n);
  return out;
}

/** A state directory as the embedded-store agent leaves it, with its socket inside. */
function agentStateDir(root: string): string {
  const dir = join(root, "state");
  mkdirSync(join(dir, "store"), { recursive: true });
  writeFileSync(join(dir, "store", "store.log"), "{}\n");
  writeFileSync(join(dir, "store", "store.snap"), "{}\n");
  return dir;
}

/** A unix socket nobody listens on any more: what an agent killed with SIGKILL leaves. */
function staleSocket(path: string): void {
  const listenThenDie = `require("node:net").createServer().listen(process.argv[1], () => process.kill(process.pid, "SIGKILL"))`;
  const r = spawnSync(process.execPath, ["-e", listenThenDie, path]);
  assert.equal(r.signal, "SIGKILL", String(r.stderr));
  assert.ok(existsSync(path));
}

function params(root: string, over: Partial<UninstallParams>): UninstallParams {
  return {
    stateDir: join(root, "state"),
    socketPath: join(root, "run", "agent.sock"),
    nodeNetns: node,
    netnsPrefix: `${prefix}-e`,
    table,
    podCidr4: "10.201.0.0/24",
    ...over,
  };
}

interface Refusal {
  readonly name: string;
  /** Prepares the temporary root; returns the params to give and the paths that must survive. */
  readonly setup: (root: string) => { over: Partial<UninstallParams>; keep: string[] };
  readonly message: RegExp;
}

const refusals: Refusal[] = [
  {
    name: "a state directory holding a file the agent did not write",
    setup: (root) => {
      const dir = agentStateDir(root);
      writeFileSync(join(dir, "notes.txt"), "mine\n");
      return { over: {}, keep: [join(dir, "notes.txt"), join(dir, "store", "store.log")] };
    },
    message:
      /Cannot uninstall: ".*state\/notes\.txt" was not written by the agent: a state directory holds only store\//,
  },
  {
    name: "a state directory that is a home directory (--state-dir / in miniature)",
    setup: (root) => {
      mkdirSync(join(root, "home", ".ssh"), { recursive: true });
      writeFileSync(join(root, "home", ".ssh", "id_ed25519"), "secret\n");
      return { over: { stateDir: join(root, "home") }, keep: [join(root, "home", ".ssh", "id_ed25519")] };
    },
    message: /Cannot uninstall: ".*home\/\.ssh" was not written by the agent/,
  },
  {
    name: "a state directory that is a symbolic link",
    setup: (root) => {
      const real = agentStateDir(join(root, "elsewhere"));
      symlinkSync(real, join(root, "state"));
      return { over: {}, keep: [join(real, "store", "store.log")] };
    },
    message:
      /Cannot uninstall: --state-dir ".*state" is a symbolic link; expected the agent's state directory/,
  },
  {
    name: "a symbolic link inside store/ pointing out of it",
    setup: (root) => {
      const dir = agentStateDir(root);
      mkdirSync(join(root, "outside"));
      writeFileSync(join(root, "outside", "precious"), "x");
      symlinkSync(join(root, "outside"), join(dir, "store", "store.old"));
      return { over: {}, keep: [join(root, "outside", "precious"), join(dir, "store", "store.log")] };
    },
    message:
      /Cannot uninstall: ".*store\/store\.old" was not written by the agent: store\/ holds only the store's regular files/,
  },
  {
    name: "a --socket that is a regular file, not a socket",
    setup: (root) => {
      agentStateDir(root);
      writeFileSync(join(root, "passwd"), "root:x:0:0\n");
      return { over: { socketPath: join(root, "passwd") }, keep: [join(root, "passwd")] };
    },
    message: /Cannot uninstall: --socket ".*passwd" is not a unix socket/,
  },
  {
    name: "a --netns-prefix too short to be safe (it used to be checked after the table was gone)",
    setup: (root) => ({ over: { netnsPrefix: "mh" }, keep: [join(agentStateDir(root), "store")] }),
    message: /Cannot uninstall: --netns-prefix "mh" is not a namespace name prefix of 3 to 64/,
  },
  {
    name: "a --pod-cidr that is not an IPv4 prefix",
    setup: (root) => ({ over: { podCidr4: "10.201.0.0/33" }, keep: [join(agentStateDir(root), "store")] }),
    message: /Cannot uninstall: --pod-cidr "10\.201\.0\.0\/33" is not an IPv4 prefix/,
  },
  {
    name: "a --pod-cidr6 that is an IPv4 prefix",
    setup: (root) => ({ over: { podCidr6: "10.9.0.0/24" }, keep: [join(agentStateDir(root), "store")] }),
    message: /Cannot uninstall: --pod-cidr6 "10\.9\.0\.0\/24" is not an IPv6 prefix/,
  },
  {
    name: "a --table that is not an nftables name",
    setup: (root) => ({ over: { table: "x y" }, keep: [join(agentStateDir(root), "store")] }),
    message: /Cannot uninstall: --table "x y" is not an nftables table name/,
  },
  {
    name: "a --node-netns that is a path",
    setup: (root) => ({ over: { nodeNetns: "../x" }, keep: [join(agentStateDir(root), "store")] }),
    message: /Cannot uninstall: --node-netns "\.\.\/x" is not a namespace name/,
  },
];

test(
  "uninstall: every input is checked first; a refusal names what is wrong and changes nothing (root)",
  { skip: rootSkipReason(), timeout: 120_000 },
  async (t) => {
    const roots: string[] = [];
    try {
      await buildLab();
      const full = ["table", "route", `${prefix}-e1`, node];
      assert.deepEqual((await labState()).sort(), full.sort());
      for (const c of refusals) {
        await t.test(c.name, async () => {
          const root = mkdtempSync(join(tmpdir(), "membrane-mh5-"));
          roots.push(root);
          const { over, keep } = c.setup(root);
          await assert.rejects(uninstall(params(root, over)), (e: unknown) => {
            assert.ok(e instanceof MembraneError, String(e));
            assert.equal(e.code, "CLI_USAGE");
            assert.match(e.message, c.message);
            assert.ok(e.hint !== undefined && e.hint.length > 0, "a refusal says how to proceed");
            return true;
          });
          for (const k of keep) assert.ok(existsSync(k), `a refused uninstall removed ${k}`);
          assert.deepEqual((await labState()).sort(), full.sort(), "a refused uninstall changed the kernel");
        });
      }
    } finally {
      await runRaw(["ip", "netns", "del", node]);
      await cleanupPrefix(prefix);
      for (const r of roots) rmSync(r, { recursive: true, force: true });
    }
  },
);

test(
  "uninstall: the layout the agent writes goes (store files, a socket inside the state directory), and the lab with it (root)",
  { skip: rootSkipReason(), timeout: 120_000 },
  async () => {
    const root = mkdtempSync(join(tmpdir(), "membrane-mh5-"));
    try {
      await buildLab();
      const dir = agentStateDir(root);
      mkdirSync(join(dir, "run"));
      staleSocket(join(dir, "run", "agent.sock"));
      const r = await uninstall(params(root, { socketPath: join(dir, "run", "agent.sock") }));
      assert.deepEqual(r.removed, [
        `nftables table inet ${table} (netns ${node})`,
        `route blackhole 10.201.0.0/24 (netns ${node})`,
        `network namespace ${prefix}-e1`,
        `network namespace ${node}`,
        `socket ${join(dir, "run", "agent.sock")}`,
        `state directory ${dir}`,
      ]);
      assert.deepEqual(await labState(), []);
      assert.deepEqual(readdirSync(root), []);
    } finally {
      await runRaw(["ip", "netns", "del", node]);
      await cleanupPrefix(prefix);
      rmSync(root, { recursive: true, force: true });
    }
  },
);
