/**
 * The LB table's element deltas (lb-compile.ts, as nft text) -> the bytes the
 * kernel stores (abi/nft-setelem-wire.ts), so that a backend change is one
 * nf_tables batch written by nfnl/setelem.ts, whatever the table's size (`nft`
 * reads every element of a concatenated map first: ~1 s at 12,000 elements).
 *
 *   field of a concatenation: ipv4 4 bytes; inet_proto 1 byte + 3 zero;
 *   inet_service 2 bytes network order + 2 zero; mark 4 bytes host order
 *   (as nfnl/encode.ts, checked there against nft 1.0.6)
 */
import type { ElementOps } from "./nfnl/setelem.js";
import { VERDICT, type WireElement } from "../abi/nft-setelem-wire.js";
import { isIpv4, LB_SETS, type LbElements } from "./lb-compile.js";

type Field = "ipv4" | "proto" | "port" | "mark";

const KEYS: Record<string, Field[]> = {
  front4: ["ipv4", "proto", "port"],
  l7front4: ["ipv4", "proto", "port"],
  empty4: ["ipv4", "proto", "port"],
  nat4: ["ipv4", "proto", "port"],
  be4: ["ipv4", "proto", "port", "mark"],
  npfront: ["proto", "port"],
  npempty: ["proto", "port"],
  npnat: ["proto", "port"],
  npbe: ["proto", "port", "mark"],
};
const PROTO: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };

function bytes(fields: readonly Field[], text: string): Uint8Array | undefined {
  const parts = text.split(" . ");
  if (parts.length !== fields.length) return undefined;
  const b = Buffer.alloc(fields.length * 4);
  for (let i = 0; i < fields.length; i++) {
    const p = parts[i] as string;
    const at = i * 4;
    switch (fields[i]) {
      case "ipv4": {
        if (!isIpv4(p)) return undefined;
        p.split(".").forEach((o, j) => b.writeUInt8(Number(o), at + j));
        break;
      }
      case "proto": {
        const n = PROTO[p];
        if (n === undefined) return undefined;
        b.writeUInt8(n, at);
        break;
      }
      case "port":
        b.writeUInt16BE(Number(p), at);
        break;
      case "mark":
        b.writeUInt32LE(Number(p), at);
        break;
    }
  }
  return b;
}

function element(set: string, key: string, value: string | undefined): WireElement | undefined {
  const fields = KEYS[set];
  const k = fields && bytes(fields, key);
  if (!k) return undefined;
  if (value === undefined) return { key: k };
  if (value === "") return { key: k, set: true };
  if (value.startsWith("goto ")) return { key: k, verdict: { code: VERDICT.goto, chain: value.slice(5) } };
  const data = bytes(["ipv4", "port"], value);
  return data ? { key: k, data } : undefined;
}

/** The delta from `was` to `now` as element operations, or undefined when one cannot be encoded. */
export function lbWireDelta(was: LbElements, now: LbElements): ElementOps[] | undefined {
  const ops: ElementOps[] = [];
  for (const { name } of LB_SETS) {
    const a = was.get(name) ?? new Map<string, string>();
    const b = now.get(name) ?? new Map<string, string>();
    const add: WireElement[] = [];
    const del: WireElement[] = [];
    for (const [k, v] of a) {
      if (b.get(k) === v) continue;
      const e = element(name, k, undefined);
      if (!e) return undefined;
      del.push(e);
    }
    for (const [k, v] of b) {
      if (a.get(k) === v) continue;
      const e = element(name, k, v);
      if (!e) return undefined;
      add.push(e);
    }
    if (add.length || del.length) ops.push({ set: name, add, del });
  }
  return ops;
}
