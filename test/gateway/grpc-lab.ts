/**
 * gRPC servers and clients for the gateway tests, run in the lab's network
 * namespaces with @grpc/grpc-js (real HTTP/2, real gRPC framing), every
 * process in its own group (killGroup ends it).
 *
 *   server: /demo.Echo/{Echo,Weighted,Fail}, /demo.Other/Ping, /demo.Mirror/Call on port 9090,
 *           and the conformance suite's gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/
 *           {Echo,EchoTwo,EchoThree}; answers its name in the body (with the method and
 *           the request metadata it saw), a response header and a trailer;
 *           /demo.Stats/Count answers how many calls of each path it took
 *   client: n unary calls of one method on ONE channel (one HTTP/2 connection)
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";

const GRPC = createRequire(import.meta.url).resolve("@grpc/grpc-js");

const SERVER = `
const grpc = require(process.argv[1]);
const name = process.argv[2];
const id = (x) => x;
const m = (path) => ({ path, requestStream: false, responseStream: false,
  requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id });
const calls = {};
const ok = (call, cb) => {
  calls[call.getPath()] = (calls[call.getPath()] || 0) + 1;
  const h = new grpc.Metadata(); h.set("x-backend", name); call.sendMetadata(h);
  const t = new grpc.Metadata(); t.set("x-trailer", "t-" + name);
  const seen = { backend: name, got: call.request.toString(), added: call.metadata.get("x-added").join(","),
    xff: call.metadata.get("x-forwarded-for").join(","), method: call.getPath(), metadata: call.metadata.toJSON() };
  cb(null, Buffer.from(JSON.stringify(seen)), t);
};
const server = new grpc.Server();
server.addService({ Echo: m("/demo.Echo/Echo"), Weighted: m("/demo.Echo/Weighted"), Fail: m("/demo.Echo/Fail") }, {
  Echo: ok, Weighted: ok,
  Fail: (call, cb) => { const t = new grpc.Metadata(); t.set("x-why", "because");
    cb({ code: grpc.status.FAILED_PRECONDITION, details: "refused by " + name, metadata: t }); },
});
server.addService({ Ping: m("/demo.Other/Ping") }, { Ping: ok });
const SUITE = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/";
server.addService({ Echo: m(SUITE + "Echo"), EchoTwo: m(SUITE + "EchoTwo"), EchoThree: m(SUITE + "EchoThree") },
  { Echo: ok, EchoTwo: ok, EchoThree: ok });
server.addService({ Call: m("/demo.Mirror/Call") }, { Call: ok });
server.addService({ Count: m("/demo.Stats/Count") }, {
  Count: (call, cb) => cb(null, Buffer.from(JSON.stringify({ backend: name, got: JSON.stringify(calls), added: "", xff: "" }))),
});
server.bindAsync(process.argv[3] || "0.0.0.0:9090", grpc.ServerCredentials.createInsecure(), (e) => {
  if (e) { console.error(e.message); process.exit(1); }
  console.log("ready");
});`;

const CLIENT = `
const grpc = require(process.argv[1]);
const [target, path, n, authority, caFile, meta] = process.argv.slice(2);
const fs = require("fs");
const creds = caFile ? grpc.credentials.createSsl(fs.readFileSync(caFile)) : grpc.credentials.createInsecure();
const opts = {};
if (authority) { opts["grpc.default_authority"] = authority; if (caFile) opts["grpc.ssl_target_name_override"] = authority; }
const client = new grpc.Client(target, creds, opts);
const id = (x) => x;
const out = [];
let i = 0;
const one = () => {
  if (i++ >= Number(n)) { client.close(); console.log(JSON.stringify(out)); return; }
  let headers = {}, body, err;
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(JSON.parse(meta || "{}"))) md.set(k, v);
  const call = client.makeUnaryRequest(path, id, id, Buffer.from("hi " + i), md,
    { deadline: Date.now() + 10000 }, (e, r) => { err = e; body = r && r.toString(); });
  call.on("metadata", (md) => (headers = md.getMap()));
  call.on("status", (s) => {
    out.push({ code: s.code, details: s.details, headers, trailers: s.metadata.getMap(), body: body ? JSON.parse(body) : undefined });
    one();
  });
};
one();`;

const H2_ECHO = `
const name = process.argv[1];
require("http2").createServer((q, s) => {
  s.setHeader("x-backend", name);
  s.end(JSON.stringify({ httpVersion: q.httpVersion, method: q.method, url: q.url, headers: q.headers }));
}).listen(9091, "0.0.0.0", () => console.log("ready"));`;

/** A plain HTTP/2 (h2c) server on port 9091 in `ns` answering what it got. */
export function startH2Echo(ns: string, name: string): Promise<ChildProcess> {
  const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", H2_ECHO, name], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    c.stdout?.once("data", () => resolve(c));
    c.once("exit", (code) => reject(new Error(`h2c echo ${name} exited ${code}`)));
  });
}

export interface GrpcAnswer {
  code: number;
  details: string;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body?: {
    backend: string;
    got: string;
    added: string;
    xff: string;
    /** The full method the server was called with. */
    method?: string;
    /** The request metadata it saw (name -> values). */
    metadata?: Record<string, string[]>;
  };
}

/** A gRPC server named `name` on port 9090 in `ns` (IPv4 only unless `bind` says, e.g. "[::]:9090"). */
export function startGrpcServer(ns: string, name: string, bind = "0.0.0.0:9090"): Promise<ChildProcess> {
  const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", SERVER, GRPC, name, bind], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    c.stdout?.once("data", () => resolve(c));
    c.once("exit", (code) => reject(new Error(`gRPC server ${name} exited ${code}`)));
  });
}

/** `n` unary calls of `path` on one channel from `ns`. */
export function grpcCalls(
  ns: string,
  target: string,
  path: string,
  n = 1,
  o: { authority?: string; caFile?: string; metadata?: Record<string, string> } = {},
): GrpcAnswer[] {
  const args = [
    GRPC,
    target,
    path,
    String(n),
    o.authority ?? "",
    o.caFile ?? "",
    JSON.stringify(o.metadata ?? {}),
  ];
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, "-e", CLIENT, ...args], {
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`gRPC client: ${r.stderr}`);
  return JSON.parse(r.stdout) as GrpcAnswer[];
}
