/**
 * nfnl/objects.ts against nft, the oracle: many compiled endpoints (IPv4, IPv6
 * or both; each map kind present or not; allow, deny, redirect, audit; enforced,
 * audit default or open; comments with quotes, long or none) and the policy groups
 * they share are created, changed and deleted in one scratch table with `nft -f` of
 * plan.ts's script and in another with our nfnetlink batches. `nft list table` of
 * both must be the same text after the table name, at every step.
 */
import { DISPATCH_MAPS } from "../../src/datapath/dispatch.js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { type EndpointContext, type EndpointParts } from "../../src/datapath/compile-endpoint.js";
import { compileGrouped } from "../../src/datapath/group-table.js";
import type { GroupPart } from "../../src/datapath/policy-groups.js";
import { globalPart } from "../../src/datapath/compile.js";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, runRaw } from "../../src/datapath/exec.js";
import type { CompiledTable, NftMap } from "../../src/datapath/model.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { objectMessages } from "../../src/datapath/nfnl/objects.js";
import { SetElemWriter } from "../../src/datapath/nfnl/setelem.js";
import { asActual, plan } from "../../src/datapath/plan.js";
import type {
  DatapathEndpoint,
  DatapathState,
  DirectionPolicy,
  PolicySegment,
} from "../../src/datapath/types.js";
import { rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

/** A small deterministic generator (the seed is printed on failure). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const TEXTS: Record<number, string> = {
  1: "default/web spec.ingress[0]",
  2: 'ns/"quoted" policy with "double" quotes',
  3: "x".repeat(200) + " a long rule text that compile cuts at 120 characters",
  4: "audit/rule spec.egress[2]",
  5: "tab\there and ünïcödé",
  // 6, 7: no text (no comment)
};

function direction(r: () => number): DirectionPolicy {
  const segments: PolicySegment[] = [];
  const n = Math.floor(r() * 7);
  const wild = new Set<number>();
  for (let i = 0; i < n; i++) {
    const identity = r() < 0.35 ? 0 : 300 + Math.floor(r() * 4);
    const protos = [6, 17, 132, 1, 58, 0, 47];
    let proto = protos[Math.floor(r() * protos.length)] as number;
    if (proto === 0 && wild.has(identity)) proto = 6;
    if (proto === 0) wild.add(identity);
    const icmp = proto === 1 || proto === 58;
    const lo = icmp ? (i * 17) % 256 : 1000 + i * 10;
    const hi = proto === 0 ? 0 : icmp ? lo : lo + Math.floor(r() * 5);
    const ruleId = 1 + Math.floor(r() * 7);
    const k = r();
    const action: PolicySegment["action"] =
      k < 0.4 ? "allow" : k < 0.6 ? "deny" : k < 0.8 ? "audit" : "redirect";
    const seg: PolicySegment = { identity, proto, lo: proto === 0 ? 0 : lo, hi, action, ruleId };
    if (action === "redirect") seg.proxy = proto === 17 || r() < 0.3 ? "dns" : "l7";
    segments.push(seg);
  }
  const enforced = r() < 0.6;
  return { enforced, ...(!enforced && r() < 0.5 ? { auditDefault: true } : {}), segments };
}

function endpoint(r: () => number, id: number): DatapathEndpoint {
  const fam = r();
  return {
    id,
    name: `ep${id}`,
    hostIfname: `veth${id}`,
    ...(fam < 0.7 ? { ipv4: `10.9.${id >> 8}.${id & 255}` } : {}),
    ...(fam > 0.3 ? { ipv6: `fd00:9::${id.toString(16)}` } : {}),
    identity: 1000 + id,
    ingress: direction(r),
    egress: direction(r),
  };
}

/** An endpoint's scope as incremental.ts builds it: its maps and chains, its dispatch elements. */
function scope(global: CompiledTable, part: EndpointParts | undefined): CompiledTable {
  const dispatch = DISPATCH_MAPS.map((d): NftMap => {
    const m = global.maps.find((x) => x.name === d.name) as NftMap;
    const e = part?.dispatch[d.part];
    return { ...m, elements: e ? [e] : [] };
  });
  return {
    family: "inet",
    name: global.name,
    maps: dispatch,
    chains: [...(part?.chains ?? [])],
  };
}

function groupScope(global: CompiledTable, g: GroupPart | undefined): CompiledTable {
  return { family: "inet", name: global.name, maps: g?.maps ?? [], chains: g?.chains ?? [] };
}

type Grouped = ReturnType<typeof compileGrouped>;

/**
 * The scopes from `from` to `to` in incremental.ts's order: groups made or changed,
 * endpoints, then groups no longer there (after the chains that went to them).
 */
function scopesOf(
  global: CompiledTable,
  from: Grouped,
  to: Grouped,
): { want: CompiledTable; had: CompiledTable }[] {
  const out: { want: CompiledTable; had: CompiledTable }[] = [];
  for (const [name, g] of to.groups) {
    const h = from.groups.get(name);
    if (h?.key !== g.key) out.push({ want: groupScope(global, g), had: groupScope(global, h) });
  }
  const ids = [...new Set([...from.parts.keys(), ...to.parts.keys()])].sort((a, b) => a - b);
  for (const id of ids)
    out.push({ want: scope(global, to.parts.get(id)), had: scope(global, from.parts.get(id)) });
  for (const [name, h] of from.groups)
    if (!to.groups.has(name)) out.push({ want: groupScope(global, undefined), had: groupScope(global, h) });
  return out;
}

describe("nfnl objects: the same table as nft writes (root)", { skip: skip ?? false }, () => {
  const prefix = "mh3" + randomBytes(3).toString("hex");
  let node: NamedNodeNetns;
  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });
  const list = async (table: string): Promise<string> => {
    const r = await runRaw(["nft", "list", "table", "inet", table], { netns: node.netns });
    assert.equal(r.stderr, "", `nft list table ${table} complains`);
    return r.stdout.split("\n").slice(1).join("\n");
  };

  test("endpoints created, changed and deleted through nfnl list exactly as nft's", async () => {
    const seed = Date.now() >>> 0;
    const r = rng(seed);
    const state: DatapathState = {
      hostIdentity: 1,
      ipcache: [],
      endpoints: [],
      rules: Object.entries(TEXTS).map(([id, text]) => ({ id: Number(id), text })),
      proxy: { ipv4: "10.9.255.1", ipv6: "fd00:9::ffff", l7Port: 15001, dnsPort: 15053, gid: 1337 },
    };
    const ctx: EndpointContext = {
      group: 3,
      ruleText: (id) => TEXTS[id],
      ...(state.proxy ? { proxy: state.proxy } : {}),
    };
    const tables = { nft: "o_nft", nfnl: "o_nfnl" };
    const global = (t: string): CompiledTable => globalPart(state, { table: t, logGroup: 3 });
    for (const t of Object.values(tables))
      await nftApply(plan(global(t), undefined).script, { netns: node.netns });
    const w = new SetElemWriter(node.netns);
    let cur: Grouped = { parts: new Map<number, EndpointParts>(), groups: new Map() };
    /** One step: from the current endpoints to `eps`, written both ways (one batch each), then compared. */
    const step = async (what: string, eps: DatapathEndpoint[]): Promise<void> => {
      const next = compileGrouped(
        [...eps].sort((a, b) => a.id - b.id),
        ctx,
      );
      const script = scopesOf(global(tables.nft), cur, next)
        .map((p) => plan(p.want, asActual(p.had)).script)
        .join("");
      await nftApply(script, { netns: node.netns });
      const msgs = objectMessages(tables.nfnl, [], scopesOf(global(tables.nfnl), cur, next), []);
      assert.ok(msgs, `${what}: the objects are encodable (seed ${seed})`);
      await w.apply(tables.nfnl, []); // the writer is up
      await w.applyMessages(msgs);
      cur = next;
      assert.equal(await list(tables.nfnl), await list(tables.nft), `${what} (seed ${seed})`);
    };
    try {
      const eps = Array.from({ length: 40 }, (_, i) => endpoint(r, i + 1));
      // A quarter share another's policy (same groups), as replicas do.
      for (const ep of eps)
        if (ep.id > 4 && r() < 0.25) {
          const twin = eps[Math.floor(r() * (ep.id - 1))] as DatapathEndpoint;
          Object.assign(ep, { ingress: twin.ingress, egress: twin.egress });
        }
      await step("create 40 endpoints", eps);
      const listed = await list(tables.nfnl);
      for (const shape of [
        "_id {",
        "_idr {",
        "_idi {",
        "_any {",
        "_anyr {",
        "_anyi {",
        "_r",
        "_a",
        "_u",
        "_p",
        "d {",
        "comment",
      ])
        assert.ok(listed.includes(shape), `the random endpoints cover ${shape}`);
      // New policies for a third (chains and maps come and go, elements change), the rest kept.
      const changed = eps.map((ep) => (r() < 0.34 ? { ...endpoint(r, ep.id), ...pick(ep) } : ep));
      await step("change a third", changed);
      // Every member of a shared group moves the same way: the group changes in place.
      const shared = [...cur.groups.values()].find(
        (g) => [...cur.parts.values()].filter((p) => p.groups[g.dir]?.name === g.name).length > 1,
      );
      assert.ok(shared, `some group is shared (seed ${seed})`);
      const moved: DirectionPolicy = {
        enforced: true,
        segments: [{ identity: 301, proto: 6, lo: 7, hi: 7, action: "allow", ruleId: 1 }],
      };
      const together = changed.map((ep) => {
        const g = cur.parts.get(ep.id)?.groups[shared.dir];
        return g?.name === shared.name ? { ...ep, [shared.dir === "in" ? "ingress" : "egress"]: moved } : ep;
      });
      await step("move a shared group's members together", together);
      // Half of them go (dispatch elements, rules, maps, chains; groups renamed or gone).
      await step(
        "delete half",
        together.filter((ep) => ep.id % 2 === 0),
      );
      await step("delete the rest", []);
      assert.doesNotMatch(
        await list(tables.nfnl),
        /chain [eg]\d|map [eg]\d/,
        "no endpoint or group object is left",
      );
    } finally {
      w.stop();
    }
  });
});

/** The fields that tie an endpoint to its interface and addresses (kept across a policy change). */
function pick(ep: DatapathEndpoint): Pick<DatapathEndpoint, "hostIfname" | "ipv4" | "ipv6"> & { id: number } {
  const { ipv4, ipv6 } = ep;
  return { id: ep.id, hostIfname: ep.hostIfname, ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) };
}
