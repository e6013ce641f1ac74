/**
 * Incremental LB state == from scratch, under random churn of Services, EndpointSlices and
 * pods (local and remote endpoints of a real PolicyEngine, read through its pod log as the
 * agent does). Pure part: the model's per-service frontends against desiredLb over everything.
 * Kernel part (root: netns, nftables): the table written by deltas against one written whole,
 * both read back with `nft -j` and compared.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { LbTable } from "../../src/datapath/lb-table.js";
import type { LbFrontend } from "../../src/datapath/lb-types.js";
import { desiredLb, type LbPod } from "../../src/lb/desired.js";
import { LbModel } from "../../src/lb/model.js";
import type { LbService, LbSlice } from "../../src/lb/types.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { PodJournal } from "../../src/policy/pod-journal.js";

const run = promisify(execFile);
const root = process.getuid?.() === 0;

/** mulberry32: a seeded generator, so a failure replays. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A world that changes one thing per step, and an LbModel that follows it as the agent's sync does. */
class Churn {
  readonly engine = new PolicyEngine();
  readonly services = new Map<string, LbService>();
  readonly slices = new Map<string, LbSlice>();
  readonly model = new LbModel();
  /** Every service's frontends as the model last gave them. */
  readonly fronts = new Map<string, LbFrontend[]>();
  private cursor: number | undefined;
  constructor(private readonly r: () => number) {}

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)] as T;
  }

  private labels(): Record<string, string> {
    const l: Record<string, string> = { app: this.pick(["x", "y", "z"]) };
    if (this.r() < 0.5) l["tier"] = this.pick(["1", "2"]);
    return l;
  }

  /** One random change; returns the service groups it made the model recompute. */
  step(): Map<string, LbFrontend[]> {
    const i = Math.floor(this.r() * 6);
    const ns = ["a", "b"][i % 2] as string;
    const op = this.r();
    const del = this.r() < 0.25;
    if (op < 0.3) {
      const name = `p${i}`;
      if (del) this.engine.deleteEndpoint(ns, name);
      else {
        const named = this.r() < 0.6 ? [{ name: "http", port: 8000 + Math.floor(this.r() * 3), protocol: "TCP" as const }] : []; // prettier-ignore
        this.engine.upsertEndpoint({ name, namespace: ns, labels: this.labels(), ips: [`10.1.0.${i + 1}`], namedPorts: named }); // prettier-ignore
      }
    } else if (op < 0.5) {
      const ip = `10.3.0.${i + 1}`;
      if (del) this.engine.deleteRemoteEndpoint(ip);
      else this.engine.upsertRemoteEndpoint({ ip, namespace: this.pick(["a", "b"]), labels: this.labels() });
    } else if (op < 0.75) {
      const key = `${ns}/s${i}`;
      if (del) this.services.delete(key);
      else {
        const type = this.pick(["ClusterIP", "NodePort"] as const);
        const sel = this.r();
        const selector = sel < 0.4 ? undefined : sel < 0.8 ? { app: this.pick(["x", "y"]) } : this.labels();
        this.services.set(key, {
          namespace: ns,
          name: `s${i}`,
          labels: {},
          type,
          ...(selector ? { selector } : {}),
          clusterIP: `10.96.0.${i + 1}`,
          ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: this.pick([8080, "http"]), ...(type === "NodePort" ? { nodePort: 30000 + i } : {}) }], // prettier-ignore
          ...(this.r() < 0.3 ? { affinitySeconds: 60 } : {}),
          algorithm: this.r() < 0.2 ? "maglev" : "random",
        });
      }
      this.model.setService(key, this.services.get(key));
    } else {
      const key = `${ns}/sl${i}`;
      if (del) this.slices.delete(key);
      else {
        const n = Math.floor(this.r() * 4);
        this.slices.set(key, {
          namespace: ns,
          name: `sl${i}`,
          service: `s${Math.floor(this.r() * 6)}`,
          ports: [{ name: "http", port: 9000 + Math.floor(this.r() * 2), protocol: "TCP" }],
          endpoints: Array.from({ length: n }, () => {
            const ready = this.r() < 0.6;
            const terminating = !ready && this.r() < 0.7;
            return {
              addresses: [`10.2.0.${1 + Math.floor(this.r() * 8)}`],
              ready,
              serving: true,
              terminating,
            };
          }),
        });
      }
      this.model.setSlice(key, this.slices.get(key));
    }
    return this.sync();
  }

  /** The agent's sync: the pods changed since the last one, then the dirty services. */
  sync(): Map<string, LbFrontend[]> {
    const pods = this.engine.pods;
    const changed = this.cursor === undefined ? undefined : pods.since(this.cursor);
    if (changed === undefined) {
      this.model.clearPods();
      for (const [k, p] of pods.all()) this.model.setPod(k, p);
    } else for (const k of new Set(changed)) this.model.setPod(k, pods.get(k));
    this.cursor = pods.head;
    const out = this.model.flush();
    for (const [k, f] of out) if (f.length) this.fronts.set(k, f); else this.fronts.delete(k); // prettier-ignore
    return out;
  }

  /** desiredLb over everything, as the controller computed it before. */
  scratch(): ReturnType<typeof desiredLb> {
    const pods: LbPod[] = [
      ...this.engine.listEndpoints().map((r) => r.spec),
      ...this.engine.remoteEndpoints().map((r) => ({ ...r.spec, ips: [r.spec.ip] })),
    ];
    return desiredLb([...this.services.values()], pods, [...this.slices.values()]);
  }

  incremental(): LbFrontend[] {
    return [...this.fronts.entries()].sort(([a], [b]) => a.localeCompare(b)).flatMap(([, f]) => f);
  }
}

/** The LB table read back: each map's elements, slot maps as frontend -> sorted backends; chain names. */
async function readBack(netns: string, table: string): Promise<Record<string, unknown>> {
  const { stdout } = await run("ip", ["netns", "exec", netns, "nft", "-j", "list", "table", "inet", table]);
  const doc = JSON.parse(stdout) as { nftables: Record<string, { name: string; elem?: unknown[] }>[] };
  const out: Record<string, unknown> = { chains: [] as string[] };
  for (const o of doc.nftables) {
    if (o["chain"]) (out["chains"] as string[]).push(o["chain"].name);
    const m = o["map"] ?? o["set"];
    if (!m || m.name === "aff4") continue;
    const els = (m.elem ?? []).map((e) => (Array.isArray(e) ? e : [e, ""]) as [unknown, unknown]);
    if (m.name === "be4" || m.name === "npbe") {
      const by = new Map<string, string[]>();
      for (const [k, v] of els) {
        const parts = (k as { concat: unknown[] }).concat;
        const front = JSON.stringify(parts.slice(0, -1));
        by.set(front, [...(by.get(front) ?? []), JSON.stringify(v)].sort());
      }
      out[m.name] = Object.fromEntries([...by].sort());
    } else out[m.name] = els.map(([k, v]) => JSON.stringify([k, v])).sort();
  }
  (out["chains"] as string[]).sort();
  return out;
}

describe("incremental LB state == from scratch under random churn", () => {
  test("the model's frontends and views equal desiredLb over everything, after every one of 1,500 random changes", () => {
    for (const seed of [1, 2, 3]) {
      const c = new Churn(rng(seed));
      for (let i = 0; i < 500; i++) {
        c.step();
        const want = c.scratch();
        assert.deepEqual(c.incremental(), want.state.frontends, `seed ${seed}, step ${i}`);
        assert.deepEqual(c.model.list(), want.views, `seed ${seed}, step ${i}: views`);
      }
    }
  });

  test("a reader too far behind the pod log is told so (and reads every pod)", () => {
    const j = new PodJournal(4);
    for (let i = 0; i < 5; i++) j.note(`l:a/p${i}`);
    assert.deepEqual(j.since(3), ["l:a/p3", "l:a/p4"]);
    for (let i = 5; i < 12; i++) j.note(`l:a/p${i}`);
    assert.equal(j.since(0), undefined, "the log was trimmed past cursor 0");
    assert.deepEqual(j.since(j.head), []);
  });

  test(
    "kernel (root: netns, nftables): the delta-written table reads back equal to one written whole",
    { skip: root ? false : "needs root" },
    async () => {
      const netns = `hlb-inc-${randomBytes(3).toString("hex")}`;
      await run("ip", ["netns", "add", netns]);
      const inc = new LbTable({ netns, table: "hlbi" });
      try {
        const c = new Churn(rng(7));
        let deltas = 0;
        for (let i = 0; i < 60; i++) {
          const r = await inc.update(c.step());
          if (r.mode === "delta") deltas++;
          if (i % 10 !== 9) continue;
          const scratch = new LbTable({ netns, table: "hlbs" }); // a new table object: written whole
          await scratch.apply(c.scratch().state);
          scratch.stop();
          assert.deepEqual(await readBack(netns, "hlbi"), await readBack(netns, "hlbs"), `step ${i}`);
        }
        assert.ok(deltas > 15, `most changes were written as deltas (${deltas})`);
        // Every Service goes: the table keeps its chains of the fixed steps and no element.
        for (const key of [...c.services.keys()]) {
          c.services.delete(key);
          c.model.setService(key, undefined);
        }
        await inc.update(c.sync());
        const empty = new LbTable({ netns, table: "hlbs" });
        await empty.apply({ frontends: [] });
        empty.stop();
        assert.deepEqual(
          await readBack(netns, "hlbi"),
          await readBack(netns, "hlbs"),
          "after every service went",
        );
      } finally {
        inc.stop();
        await run("ip", ["netns", "del", netns]).catch(() => undefined);
      }
    },
  );
});
