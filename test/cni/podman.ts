/**
 * Debian's podman (4.3.1, CNI network backend) with private state, run in a
 * lab's node namespace, for tests and the benchmark:
 *
 *   dir/containers.conf   network_backend "cni", cni_plugin_dirs [membrane-cni's dir, /usr/lib/cni],
 *                         network_config_dir dir/net.d (the lab's conflist, bridge + membrane-cni)
 *   dir/root, dir/run     --root / --runroot (vfs storage), dir/tmp --tmpdir
 *   dir/rootfs            `podman run --rootfs`: the host's node and its libraries, hard-linked
 *                         (copied across file systems): no image, no registry
 *
 * Each podman command runs as `nsenter --net=<node> unshare -m --propagation unchanged sh -c ...`:
 * in the node's network namespace (the CNI plugins wire the container there), and in a mount
 * namespace of its own where a hybrid cgroup host's /sys/fs/cgroup/unified is unmounted, so that
 * crun sees cgroup v1 (`--cgroups disabled`); only that private mount namespace changes.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, link, mkdir, realpath, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Conflist } from "./runtime.js";

/** Files of the container's root file system: node and what `ldd node` names. */
function nodeFiles(): string[] {
  const out = spawnSync("ldd", [process.execPath], { encoding: "utf8" }).stdout;
  const libs = [...out.matchAll(/(\/[^\s]+\.so[^\s]*)/g)].map((m) => m[1] ?? "");
  return [process.execPath, ...libs];
}

export class Podman {
  readonly conf: string;
  private readonly global: string[];

  constructor(
    readonly dir: string,
    readonly nodeNetns: string,
  ) {
    this.conf = join(dir, "containers.conf");
    this.global = [
      "--root",
      join(dir, "root"),
      "--runroot",
      join(dir, "run"),
      "--tmpdir",
      join(dir, "tmp"),
      "--storage-driver",
      "vfs",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
    ];
  }

  get rootfs(): string {
    return join(this.dir, "rootfs");
  }

  /** containers.conf, the network's conflist and the root file system. */
  async prepare(pluginDir: string, conflist: Conflist): Promise<void> {
    await mkdir(join(this.dir, "net.d"), { recursive: true });
    await writeFile(
      this.conf,
      [
        "[network]",
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${pluginDir}", "/usr/lib/cni"]`,
        `network_config_dir = "${join(this.dir, "net.d")}"`,
        "[engine]",
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        "",
      ].join("\n"),
    );
    await writeFile(join(this.dir, "net.d", `${conflist.name}.conflist`), JSON.stringify(conflist, null, 2));
    for (const d of ["proc", "sys", "dev", "etc", "tmp"])
      await mkdir(join(this.rootfs, d), { recursive: true });
    for (const f of nodeFiles()) {
      const to = join(this.rootfs, f);
      await mkdir(dirname(to), { recursive: true });
      const real = await realpath(f); // link() would link a symlink itself
      await link(real, to).catch(() => copyFile(real, to));
    }
  }

  /** Runs `podman ARGS`; resolves with stdout, rejects with stderr on a non-zero exit. */
  run(args: readonly string[], env: Record<string, string> = {}): Promise<string> {
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const script = [
      "mount --make-rprivate /sys/fs/cgroup 2>/dev/null",
      "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi",
      `exec podman ${[...this.global, ...args].map(q).join(" ")}`,
    ].join("; ");
    const argv = [
      `--net=/run/netns/${this.nodeNetns}`,
      "unshare",
      "-m",
      "--propagation",
      "unchanged",
      "sh",
      "-c",
      script,
    ];
    return new Promise((resolve, reject) => {
      const child = spawn("nsenter", argv, {
        env: { ...process.env, CONTAINERS_CONF: this.conf, ...env },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 120_000,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", reject);
      child.on("close", (status) => {
        const stdout = Buffer.concat(out).toString("utf8");
        if (status === 0) resolve(stdout);
        else
          reject(
            new Error(`podman ${args.join(" ")}: exit ${status}: ${Buffer.concat(err).toString("utf8")}`),
          );
      });
    });
  }

  /** `podman run -d` of a TCP server on port 80 answering "ok" from the root file system. */
  runServer(
    name: string,
    network: string,
    extra: readonly string[],
    env: Record<string, string> = {},
  ): Promise<string> {
    const server = 'require("net").createServer((s) => s.end("ok")).listen(80)';
    return this.run(
      [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "--cgroups",
        "disabled",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        ...extra,
        "--rootfs",
        this.rootfs,
        process.execPath,
        "-e",
        server,
      ],
      env,
    );
  }

  /** The network namespaces of this podman's containers (/run/netns/netns-...). */
  async sandboxes(): Promise<string[]> {
    const ids = (await this.run(["ps", "-aq"]).catch(() => "")).split("\n").filter((x) => x !== "");
    if (ids.length === 0) return [];
    const out = await this.run(["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", ...ids]).catch(
      () => "",
    );
    return out.split("\n").filter((x) => /^\/run\/netns\/netns-[0-9a-f-]+$/.test(x));
  }

  /** Every container of this podman removed (stopped at once), then their network namespaces if left. Never throws. */
  async destroy(): Promise<void> {
    const sandboxes = await this.sandboxes();
    await this.run(["rm", "-af", "-t", "0"]).catch(() => undefined);
    for (const ns of sandboxes) {
      if (existsSync(ns)) spawnSync("ip", ["netns", "del", ns.slice("/run/netns/".length)]);
    }
  }
}
