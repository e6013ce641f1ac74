/**
 * A small CNI runtime for tests and the benchmark: runs a conflist's plugins
 * the way libcni does (SPEC.md section 3: ADD in order with each result as the
 * next prevResult, DEL in reverse with the ADD's final result), as processes
 * in the node's network namespace (nsenter, like a runtime running there).
 *
 *   const rt = new CniRuntime({node, pluginDirs, conflist});
 *   const r = await rt.add({containerId, netns: "/run/netns/x", ifname: "eth0", args: "K8S_POD_NAME=a"});
 *   await rt.del({...}, r.result);
 */
import { spawn } from "node:child_process";
import { mkdir, symlink } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS. */
  args?: string;
}

export interface PluginRun {
  stdout: string;
  stderr: string;
  status: number;
  /** stdout parsed, when it is JSON. */
  json: Record<string, unknown> | undefined;
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

/** The two membrane-cni binaries: the native shim (what is installed) and the Node plugin (its fallback, the reference). */
export const PLUGIN_BINARIES = {
  shim: fileURLToPath(new URL("../../../dist/bin/membrane-cni", import.meta.url)),
  node: fileURLToPath(new URL("../../../bin/membrane-cni.js", import.meta.url)),
} as const;

/**
 * membrane-cni linked as `membrane-cni` into `dir` (a CNI plugin directory): the native shim, or the
 * Node plugin with MEMBRANE_CNI_PLUGIN=node (to run the e2e suites against both).
 */
export async function installPlugin(
  dir: string,
  which: keyof typeof PLUGIN_BINARIES = process.env["MEMBRANE_CNI_PLUGIN"] === "node" ? "node" : "shim",
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await symlink(PLUGIN_BINARIES[which], join(dir, "membrane-cni"));
  return dir;
}

/** Runs one plugin binary with `env` and `stdin` in `nodeNetns` (a name under /run/netns; undefined = here). */
export function execPlugin(
  path: string,
  env: Record<string, string>,
  stdin: string,
  nodeNetns: string | undefined,
  /** Runs the plugin through this (e.g. /usr/bin/time -f ...), inside the namespace. */
  wrap: readonly string[] = [],
): Promise<PluginRun> {
  const cmd = [...wrap, path];
  const argv = nodeNetns === undefined ? cmd : ["nsenter", `--net=/run/netns/${nodeNetns}`, ...cmd];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: 60_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (status) => {
      const stdout = Buffer.concat(out).toString("utf8");
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() === "" ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      resolve({ stdout, stderr: Buffer.concat(err).toString("utf8"), status: status ?? -1, json });
    });
    child.stdin.end(stdin);
  });
}

export class CniRuntime {
  constructor(readonly p: { node: string | undefined; pluginDirs: readonly string[]; conflist: Conflist }) {}

  /** membrane-cni from the first plugin directory (installPlugin), the others from Debian's /usr/lib/cni. */
  private pluginPath(type: string): string {
    return type === "membrane-cni" ? join(this.p.pluginDirs[0] ?? "", type) : join("/usr/lib/cni", type);
  }

  private env(cmd: string, a: Attachment): Record<string, string> {
    return {
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: a.containerId,
      CNI_NETNS: a.netns,
      CNI_IFNAME: a.ifname,
      CNI_ARGS: a.args ?? "",
      CNI_PATH: this.p.pluginDirs.join(":"),
    };
  }

  private conf(i: number, prev: unknown): string {
    const l = this.p.conflist;
    const plugin = l.plugins[i] ?? {};
    return JSON.stringify({
      ...plugin,
      cniVersion: l.cniVersion,
      name: l.name,
      ...(prev !== undefined ? { prevResult: prev } : {}),
    });
  }

  /** ADD through the whole list; on a failure, DEL of the plugins that ran (libcni does the same on the caller's DEL). */
  async add(a: Attachment): Promise<{ ok: boolean; result: unknown; failed?: PluginRun; runs: PluginRun[] }> {
    let prev: unknown = undefined;
    const runs: PluginRun[] = [];
    for (let i = 0; i < this.p.conflist.plugins.length; i++) {
      const type = String(this.p.conflist.plugins[i]?.["type"]);
      const r = await execPlugin(this.pluginPath(type), this.env("ADD", a), this.conf(i, prev), this.p.node);
      runs.push(r);
      if (r.status !== 0) return { ok: false, result: prev, failed: r, runs };
      prev = r.json;
    }
    return { ok: true, result: prev, runs };
  }

  /** DEL through the list in reverse with `result` as prevResult; every plugin's run. */
  async del(a: Attachment, result: unknown): Promise<PluginRun[]> {
    const runs: PluginRun[] = [];
    for (let i = this.p.conflist.plugins.length - 1; i >= 0; i--) {
      const type = String(this.p.conflist.plugins[i]?.["type"]);
      runs.push(
        await execPlugin(this.pluginPath(type), this.env("DEL", a), this.conf(i, result), this.p.node),
      );
    }
    return runs;
  }

  /** One command to one plugin of the list (CHECK, GC, STATUS, ...) with extra configuration keys. */
  async one(
    cmd: string,
    type: string,
    a: Attachment,
    extra: Record<string, unknown> = {},
  ): Promise<PluginRun> {
    const i = this.p.conflist.plugins.findIndex((p) => p["type"] === type);
    const conf = { ...(JSON.parse(this.conf(i, undefined)) as Record<string, unknown>), ...extra };
    return execPlugin(this.pluginPath(type), this.env(cmd, a), JSON.stringify(conf), this.p.node);
  }
}
