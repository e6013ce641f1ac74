/**
 * A lab for CNI tests: the agent lab (test/agent/e2e/harness.ts) under an
 * "mx5" + random hex prefix, membrane-cni installed in a plugin directory of
 * its temp dir, and a conflist (ptp or bridge, then membrane-cni) whose
 * host-local state lives in that temp dir too.
 *
 *   const c = await CniLab.start("ptp");
 *   try { const a = await c.add("web", "MEMBRANE_LABELS=app:server") ... } finally { await c.destroy() }
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentLab } from "../agent/e2e/harness.js";
import { CniRuntime, installPlugin, type Attachment, type Conflist } from "./runtime.js";

export type FirstPlugin = "ptp" | "bridge";
/** "standalone": membrane-cni alone in the list (the agent wires the container). */
export type ListKind = FirstPlugin | "standalone";

/** "my5" + 6 random hex characters (interface names stay <= 15 with a short suffix). */
export function mx5Prefix(): string {
  return "my5" + randomBytes(3).toString("hex");
}

/** "mx7" + 6 random hex characters (standalone-mode tests). */
export function mx7Prefix(): string {
  return "mx7" + randomBytes(3).toString("hex");
}

/** The conflist: `first` wiring an address from `subnet`, then membrane-cni talking to `socket` (or it alone). */
export function conflist(
  first: ListKind,
  o: { name: string; subnet: string; socket: string; dataDir: string; bridge: string },
): Conflist {
  const own = { type: "membrane-cni", socket: o.socket, labels: { net: o.name } };
  if (first === "standalone") return { cniVersion: "1.0.0", name: o.name, plugins: [own] };
  const ipam = { type: "host-local", ranges: [[{ subnet: o.subnet }]], dataDir: o.dataDir };
  const wire =
    first === "ptp"
      ? { type: "ptp", ipMasq: false, ipam: { ...ipam, routes: [{ dst: "0.0.0.0/0" }] } }
      : { type: "bridge", bridge: o.bridge, isGateway: true, isDefaultGateway: true, ipMasq: false, ipam };
  return {
    cniVersion: "1.0.0",
    name: o.name,
    plugins: [wire, own],
  };
}

export class CniLab {
  private readonly containers = new Map<string, { att: Attachment; result: unknown }>();

  private constructor(
    readonly lab: AgentLab,
    readonly rt: CniRuntime,
    readonly dir: string,
    readonly pluginDir: string,
  ) {}

  /** An agent lab (pod CIDR 10.210.0.0/24) and a runtime for `first` + membrane-cni on 10.89.x.0/24. */
  static async start(first: ListKind, subnet = "10.89.3.0/24"): Promise<CniLab> {
    const prefix = first === "standalone" ? mx7Prefix() : mx5Prefix();
    const dir = await mkdtemp(join(tmpdir(), `membrane-cni-${prefix}-`));
    const lab = Reflect.construct(AgentLab, [
      prefix,
      dir,
      {
        stateDir: join(dir, "state"),
        socketPath: join(dir, "agent.sock"),
        nodeNetns: `${prefix}-node`,
        netnsPrefix: `${prefix}-`,
        podCidr4: "10.210.0.0/24",
        table: `m${prefix}`,
        logGroup: 1,
        engine: {},
        logLevel: "info",
        resyncMs: 0,
      },
    ]) as AgentLab;
    const c = new CniLab(
      lab,
      new CniRuntime({
        node: `${prefix}-node`,
        pluginDirs: [join(dir, "plugins"), "/usr/lib/cni"],
        conflist: conflist(first, {
          name: `${prefix}net`,
          subnet,
          socket: join(dir, "agent.sock"),
          dataDir: join(dir, "ipam"),
          bridge: `${prefix}br`,
        }),
      }),
      dir,
      join(dir, "plugins"),
    );
    try {
      await installPlugin(c.pluginDir);
      await lab.startAgent();
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return c;
  }

  get prefix(): string {
    return this.lab.prefix;
  }

  /** A "container": a namespace `<prefix>-<name>` of its own (as a runtime makes one). */
  async sandbox(name: string): Promise<Attachment> {
    const netns = `${this.prefix}-${name}`;
    await this.lab.ip(["netns", "add", netns]);
    await this.lab.ip(["-n", netns, "link", "set", "lo", "up"]);
    return { containerId: `${this.prefix}${name}`, netns: `/run/netns/${netns}`, ifname: "eth0" };
  }

  /** Sandbox + ADD through the conflist; throws with the failing plugin's output. */
  async add(name: string, args: string): Promise<{ att: Attachment; result: Record<string, unknown> }> {
    const att = {
      ...(await this.sandbox(name)),
      args: ["IgnoreUnknown=1", `K8S_POD_NAME=${name}`, args].filter((x) => x !== "").join(";"),
    };
    const r = await this.rt.add(att);
    if (!r.ok) throw new Error(`ADD ${name} failed: ${r.failed?.stdout ?? ""} ${r.failed?.stderr ?? ""}`);
    this.containers.set(name, { att, result: r.result });
    return { att, result: r.result as Record<string, unknown> };
  }

  async del(name: string): Promise<void> {
    const c = this.containers.get(name);
    if (!c) return;
    const runs = await this.rt.del(c.att, c.result);
    const bad = runs.find((r) => r.status !== 0);
    if (bad) throw new Error(`DEL ${name} failed: ${bad.stdout} ${bad.stderr}`);
    this.containers.delete(name);
  }

  /** DEL of every container still added (best effort), then the agent lab and the temp dir. Never throws. */
  async destroy(): Promise<void> {
    for (const name of [...this.containers.keys()]) await this.del(name).catch(() => undefined);
    await this.lab.destroy();
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
