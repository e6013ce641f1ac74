/**
 * A SPIFFE Workload API client built from the official workload.proto (compiled by protoc here,
 * not from the agent's committed descriptor), run inside an endpoint's network namespace by
 * workload-api.test.ts:
 *   node workload-client.js <target> <method> <header: yes|no> <messages> [garbage|big]
 * (target `abstract:NAME` = the abstract unix socket NAME) prints one JSON line per message
 * received (certificates and key base64, a signature made with the key), then
 * {"status": code, "details"} when the call ends. `garbage`/`big` send a malformed/oversized request.
 */
import { createSign } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, create, type DescMessage } from "@bufbuild/protobuf";
import { officialSchema } from "./official-proto.js";

const [rawTarget, method, header, count, payload] = process.argv.slice(2);
const target = rawTarget?.startsWith("abstract:") ? `unix:\0${rawTarget.slice(9)}` : (rawTarget ?? "");
const want = Number(count ?? "1");
const s = officialSchema();
const reqName = method === "FetchX509Bundles" ? "X509BundlesRequest" : "X509SVIDRequest";
const resName = method === "FetchX509Bundles" ? "X509BundlesResponse" : "X509SVIDResponse";
const ser = (d: DescMessage) => (m: unknown) =>
  payload === "garbage"
    ? Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]) // field 1, a length far past the end
    : payload === "big"
      ? Buffer.alloc(64 * 1024, 0x41)
      : Buffer.from(toBinary(d, m as never));
const de = (d: DescMessage) => (b: Buffer) => fromBinary(d, b);
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
if (header === "yes") md.set("workload.spiffe.io", "true");
const call = client.makeServerStreamRequest(
  `/SpiffeWorkloadAPI/${method}`,
  ser(s.message(reqName)),
  de(s.message(resName)),
  create(s.message(reqName)),
  md,
);
let n = 0;
const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + "\n");
call.on("data", (m: Record<string, unknown>) => {
  if (method === "FetchX509Bundles") {
    const b = m["bundles"] as Record<string, Uint8Array>;
    out({
      bundles: Object.fromEntries(Object.entries(b).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
    });
  } else {
    const svids = (m["svids"] as Record<string, unknown>[]).map((x) => {
      const key = Buffer.from(x["x509SvidKey"] as Uint8Array);
      const sig = createSign("sha256").update("proof").sign({ key, format: "der", type: "pkcs8" });
      return {
        spiffeId: x["spiffeId"],
        chain: Buffer.from(x["x509Svid"] as Uint8Array).toString("base64"),
        bundle: Buffer.from(x["bundle"] as Uint8Array).toString("base64"),
        key: key.toString("base64"),
        sig: sig.toString("base64"),
      };
    });
    out({ svids });
  }
  if (++n >= want) call.cancel();
});
call.on("error", (e: grpc.ServiceError) => {
  out({ status: e.code, details: e.details });
  client.close();
});
call.on("end", () => client.close());
