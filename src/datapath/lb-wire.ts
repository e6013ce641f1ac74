/**
 * The LB table's element deltas (lb-compile.ts, as nft text) -> the bytes the
 * kernel stores (abi/nft-setelem-wire.ts), so that a backend change is one
 * nf_tables batch written by nfnl/setelem.ts, whatever the table's size (`nft`
 * reads every element of a concatenated map first: ~1 s at 12,000 elements).
 *
 *   field of a concatenation: ipv4 4 bytes; ipv6 16 bytes; inet_proto 1 byte + 3 zero;
 *   inet_service 2 bytes network order + 2 zero; mark 4 bytes host order
 *   (as nfnl/encode.ts, checked there against nft 1.0.6)
 */
import type { ElementOps } from "./nfnl/setelem.js";
import { VERDICT, type WireElement } from "../abi/nft-setelem-wire.js";
import { parseAddr } from "../labels/cidr.js";
import { isIpv4, isIpv6, LB_SETS, type LbElements } from "./lb-compile.js";

type Field = "ipv4" | "ipv6" | "proto" | "port" | "mark";

const V4: Field[] = ["ipv4", "proto", "port"];
const V6: Field[] = ["ipv6", "proto", "port"];
const NP: Field[] = ["proto", "port"];
const KEYS: Record<string, Field[]> = {
  front4: V4,
  l7front4: V4,
  l7front6: V6,
  ext4: V4,
  ext6: V6,
  empty4: V4,
  drop4: V4,
  nat4: V4,
  be4: [...V4, "mark"],
  npfront: NP,
  npempty: NP,
  npdrop: NP,
  npnat: NP,
  npbe: [...NP, "mark"],
  front6: V6,
  empty6: V6,
  drop6: V6,
  nat6: V6,
  be6: [...V6, "mark"],
  npfront6: NP,
  npempty6: NP,
  npdrop6: NP,
  npnat6: NP,
  npbe6: [...NP, "mark"],
};
/** The data of the backend maps: the backend's address and port. */
const DATA: Record<string, Field[]> = {
  be4: ["ipv4", "port"],
  npbe: ["ipv4", "port"],
  be6: ["ipv6", "port"],
  npbe6: ["ipv6", "port"],
};
const PROTO: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };
/** Bytes of a field in a concatenation (each padded to 4). */
const WIDTH: Record<Field, number> = { ipv4: 4, ipv6: 16, proto: 4, port: 4, mark: 4 };

function bytes(fields: readonly Field[], text: string): Uint8Array | undefined {
  const parts = text.split(" . ");
  if (parts.length !== fields.length) return undefined;
  const b = Buffer.alloc(fields.reduce((n, f) => n + WIDTH[f], 0));
  let at = 0;
  for (let i = 0; i < fields.length; i++) {
    const p = parts[i] as string;
    const field = fields[i] as Field;
    switch (field) {
      case "ipv4": {
        if (!isIpv4(p)) return undefined;
        p.split(".").forEach((o, j) => b.writeUInt8(Number(o), at + j));
        break;
      }
      case "ipv6": {
        const a = isIpv6(p) ? parseAddr(p) : undefined;
        if (!a) return undefined;
        for (let j = 0; j < 16; j++) b.writeUInt8(Number((a.value >> BigInt((15 - j) * 8)) & 0xffn), at + j);
        break;
      }
      case "proto": {
        const n = PROTO[p];
        if (n === undefined) return undefined;
        b.writeUInt8(n, at);
        break;
      }
      case "port":
        if (!/^\d{1,5}$/.test(p) || Number(p) > 65535) return undefined;
        b.writeUInt16BE(Number(p), at);
        break;
      case "mark":
        if (!/^\d{1,10}$/.test(p) || Number(p) > 0xffffffff) return undefined;
        b.writeUInt32LE(Number(p), at);
        break;
    }
    at += WIDTH[field];
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
  const df = DATA[set];
  const data = df && bytes(df, value);
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
