/**
 * Policy segments of one endpoint direction -> elements of six verdict maps.
 *
 *   segments ──┬─ identity != 0 ─┬─ one port ───────────> id    (mark . proto . port), hash
 *              │                 ├─ port/proto ranges ──> idr   (mark . proto . port), interval
 *              │                 └─ ICMP/ICMPv6 ────────> idi   (mark . proto . type), interval
 *              └─ identity == 0 ─┬─ one port ───────────> any   (proto . port), hash
 *                                ├─ ranges ─────────────> anyr  (proto . port), interval
 *                                └─ ICMP/ICMPv6 ────────> anyi  (proto . type), interval
 *
 * The chain looks up the identity's maps first and the wildcard ones second, so
 * a specific identity's segments win over wildcard ones (nft gives no order
 * between overlapping elements of one concatenated interval map). Within one
 * identity a proto-0 segment ("every protocol and port") is cut around the
 * protocol segments of that identity so that no two elements overlap: the
 * specific protocol wins on its ranges and the proto-0 action fills the gaps.
 *
 * Why single ports go to an exact-match map (issue 10 item 1): an apply that
 * moves a port (the scale bench's 5432 <-> 5433, ~4,800 elements over ~200 of
 * 1,000 endpoints) removed and added elements of pipapo (concatenated interval)
 * maps, and the writer's `perf` showed the removals as ~50% of its CPU
 * (bitmap_cut 29%, __memmove 10%, nft_pipapo_remove 10.5%): each one rebuilds
 * the map's lookup bitmaps. A hash map removes an element in O(1). Since the
 * elements of one identity never overlap (checked below), a packet's key hits
 * at most one of `id` and `idr` (and of `any` and `anyr`), so looking up the
 * exact map first changes no verdict. A hash map's key also needs no byte-order
 * conversion in the rule (nfnl/rules.ts, nfnl/encode.ts).
 *
 * Measured (bench/scale-layout.ts: 1,000 endpoints, the db port toggled on 200 of them,
 * one nfnetlink batch per toggle, A/B interleaved, 20 rounds, load average 9.6 on the
 * shared 2-core VM): the writer's CPU per toggle went from 85.7 ms (81.5 of it kernel)
 * with every port map an interval map to 21.8 ms (18.0 kernel) with single ports in
 * hash maps; wall p50 113.5 -> 39.1 ms.
 * With policy groups (policy-groups.ts: the 200 db endpoints share one group, whose
 * maps change once), same bench, A/B/C interleaved, 10 rounds, load average 25.4:
 *   layout                      maps   messages/toggle   writer CPU/toggle (kernel)
 *   per endpoint, interval     1,800        400            100.3 ms (94)
 *   per endpoint, hash         1,800        400             30.2 ms (25)
 *   groups, hash                   3          2              6.4 ms (5)
 */
import { MembraneError } from "../errors.js";
import { elementMemo, frozenElement, keyCanon, type Interval, type NftElement } from "./model.js";
import { IDENTITY_MASK, type PolicySegment } from "./types.js";

export interface SegmentElements {
  id: NftElement[];
  idr: NftElement[];
  idi: NftElement[];
  any: NftElement[];
  anyr: NftElement[];
  anyi: NftElement[];
}

export const ICMP_PROTOS: readonly number[] = [1, 58];
const isIcmp = (p: number): boolean => ICMP_PROTOS.includes(p);
const iv = (lo: number, hi: number): Interval => ({ lo: BigInt(lo), hi: BigInt(hi) });

/** Complement of `taken` (sorted, disjoint) inside [0, max], as intervals. */
function gaps(taken: readonly [number, number][], max: number): [number, number][] {
  const out: [number, number][] = [];
  let pos = 0;
  for (const [lo, hi] of taken) {
    if (lo > pos) out.push([pos, lo - 1]);
    pos = Math.max(pos, hi + 1);
  }
  if (pos <= max) out.push([pos, max]);
  return out;
}

type Kind = keyof SegmentElements;
const KINDS: readonly Kind[] = ["id", "idr", "idi", "any", "anyr", "anyi"];

/** An element before its verdict: its key, and the index of the segment whose verdict it takes. */
interface Slot {
  readonly key: readonly Interval[];
  readonly canon: string;
  readonly seg: number;
}
/** The elements a segment list makes, without verdicts; `sig` is what they were made from. */
interface Layout {
  readonly sig: readonly number[];
  readonly slots: Readonly<Record<Kind, readonly Slot[]>>;
}

/**
 * Layouts by segment list. Endpoints with the same computed policy share one
 * segment array (agent/desired.ts), and an apply that changes a policy
 * recompiles all of them: the keys are then computed once per array, not once
 * per endpoint (and the elements share them). A hit is checked against the
 * fields keys are made of (identity, proto, lo, hi), so an array changed in
 * place is laid out again.
 */
const layouts = new WeakMap<readonly PolicySegment[], Layout>();

function sigOf(segments: readonly PolicySegment[]): number[] {
  const sig: number[] = [];
  for (const s of segments) sig.push(s.identity, s.proto, s.lo, s.hi);
  return sig;
}

function sameSig(a: readonly number[], segments: readonly PolicySegment[]): boolean {
  if (a.length !== segments.length * 4) return false;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as PolicySegment;
    const j = i * 4;
    if (a[j] !== s.identity || a[j + 1] !== s.proto || a[j + 2] !== s.lo || a[j + 3] !== s.hi) return false;
  }
  return true;
}

/**
 * Compiles one direction's segments. `verdict(seg)` gives the map value
 * ("return" to allow, "goto <chain>" to deny). `where` names the direction in errors.
 */
export function compileSegments(
  segments: readonly PolicySegment[],
  verdict: (s: PolicySegment) => string,
  where: string,
): SegmentElements {
  let layout = layouts.get(segments);
  if (!layout || !sameSig(layout.sig, segments)) {
    layout = layoutOf(segments, where);
    layouts.set(segments, layout);
  }
  const out: SegmentElements = { id: [], idr: [], idi: [], any: [], anyr: [], anyi: [] };
  for (const kind of KINDS) {
    for (const slot of layout.slots[kind]) {
      // Frozen: what is computed from an element (model.ts) is then computed once in its life;
      // its canonical key is the layout's.
      const e = frozenElement({
        key: slot.key as Interval[],
        value: verdict(segments[slot.seg] as PolicySegment),
      });
      const memo = elementMemo(e);
      if (memo) memo.canon = slot.canon;
      out[kind].push(e);
    }
  }
  return out;
}

/** The elements' keys of a segment list (checked), each with the segment it takes its verdict from. */
function layoutOf(segments: readonly PolicySegment[], where: string): Layout {
  const out: Record<Kind, Slot[]> = { id: [], idr: [], idi: [], any: [], anyr: [], anyi: [] };
  const index = new Map<PolicySegment, number>();
  segments.forEach((s, i) => index.set(s, i));
  const slot = (key: Interval[], s: PolicySegment): Slot => {
    for (const p of key) Object.freeze(p);
    return { key: Object.freeze(key) as Interval[], canon: keyCanon(key), seg: index.get(s) as number };
  };
  const byIdentity = new Map<number, PolicySegment[]>();
  segments.forEach((s, i) => {
    const bad = (why: string): MembraneError =>
      new MembraneError("DATAPATH_STATE_INVALID", `Cannot compile ${where}.segments[${i}]: ${why}`, {
        location: { path: `${where}.segments[${i}]` },
        hint: "The policy engine produced a segment outside the datapath contract (src/datapath/types.ts).",
      });
    if (!Number.isInteger(s.identity) || s.identity < 0 || s.identity > IDENTITY_MASK)
      throw bad(`identity ${s.identity} is not in 0..${IDENTITY_MASK}`);
    if (!Number.isInteger(s.proto) || s.proto < 0 || s.proto > 255)
      throw bad(`proto ${s.proto} is not in 0..255`);
    const max = isIcmp(s.proto) ? 255 : 65535;
    if (
      s.proto !== 0 &&
      !(Number.isInteger(s.lo) && Number.isInteger(s.hi) && 0 <= s.lo && s.lo <= s.hi && s.hi <= max)
    )
      throw bad(`port range ${s.lo}-${s.hi} is not inside 0-${max}`);
    const list = byIdentity.get(s.identity);
    if (list) list.push(s);
    else byIdentity.set(s.identity, [s]);
  });

  for (const [identity, segs] of [...byIdentity].sort((a, b) => a[0] - b[0])) {
    const exact = identity === 0 ? out.any : out.id;
    const ranges = identity === 0 ? out.anyr : out.idr;
    // A port element: one protocol and one port goes to the hash map, anything wider to the interval map.
    const l4 = {
      push(e: Slot): void {
        const [proto, port] = e.key.slice(-2) as [Interval, Interval];
        (proto.lo === proto.hi && port.lo === port.hi ? exact : ranges).push(e);
      },
    };
    const icmp = identity === 0 ? out.anyi : out.idi;
    const prefix: Interval[] = identity === 0 ? [] : [iv(identity, identity)];
    const wild = segs.filter((s) => s.proto === 0);
    if (wild.length > 1) {
      throw new MembraneError(
        "DATAPATH_STATE_INVALID",
        `Cannot compile ${where}: identity ${identity} has ${wild.length} proto-0 segments, which overlap`,
        { location: { path: where }, hint: "Segments of one identity must not overlap." },
      );
    }
    const any0 = wild[0];
    const byProto = new Map<number, PolicySegment[]>();
    for (const s of segs) {
      if (s.proto === 0) continue;
      const list = byProto.get(s.proto);
      if (list) list.push(s);
      else byProto.set(s.proto, [s]);
    }

    for (const [proto, list] of [...byProto].sort((a, b) => a[0] - b[0])) {
      const target = isIcmp(proto) ? icmp : l4;
      const max = isIcmp(proto) ? 255 : 65535;
      list.sort((a, b) => a.lo - b.lo);
      let prevHi = -1;
      for (const s of list) {
        if (s.lo <= prevHi) {
          throw new MembraneError(
            "DATAPATH_STATE_INVALID",
            `Cannot compile ${where}: identity ${identity} proto ${proto} has overlapping port ranges at ${s.lo}-${s.hi}`,
            { location: { path: where }, hint: "Segments of one identity must not overlap." },
          );
        }
        prevHi = s.hi;
        target.push(slot([...prefix, iv(proto, proto), iv(s.lo, s.hi)], s));
      }
      if (any0) {
        for (const [lo, hi] of gaps(
          list.map((s) => [s.lo, s.hi]),
          max,
        )) {
          target.push(slot([...prefix, iv(proto, proto), iv(lo, hi)], any0));
        }
      }
    }
    if (any0) {
      const taken = [...new Set([...byProto.keys(), ...ICMP_PROTOS])].sort((a, b) => a - b);
      for (const [lo, hi] of gaps(
        taken.map((p) => [p, p]),
        255,
      )) {
        l4.push(slot([...prefix, iv(lo, hi), iv(0, 65535)], any0));
      }
      for (const p of ICMP_PROTOS) {
        if (!byProto.has(p)) icmp.push(slot([...prefix, iv(p, p), iv(0, 255)], any0));
      }
    }
  }
  return { sig: sigOf(segments), slots: out };
}
