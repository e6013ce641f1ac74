/**
 * Hubble's Observer API on a running agent with real traffic, called by a
 * client built from the .proto files with @grpc/proto-loader (protobufjs:
 * not Membrane's encoder): GetFlows with whitelist/blacklist, number, follow
 * and a bad filter; ServerStatus, GetNodes, GetNamespaces; the unix socket's
 * mode; TCP with mutual TLS; `membrane observe --server`. Root only.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import pino from "pino";
import { startAgent, type RunningAgent } from "../../src/agent/run.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { makeCa, makeClientCert } from "../../src/lab/etcd.js";
import { isFlowRecord } from "../../src/observe/index.js";
import { Probe } from "../../src/probe/probe.js";
import { uniquePrefix } from "../datapath/harness.js";
import { assertHubbleStrict, parseHubbleStrict } from "../observe/hubble/strict.js";
import { until } from "../support/until.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces, nftables, NFLOG)" : undefined;
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PROTO_DIR = join(ROOT, "src/observe/hubble/proto");

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;

type Obj = Record<string, unknown>;
type Unary = (req: Obj, cb: (e: grpc.ServiceError | null, res?: Obj) => void) => void;
interface ObserverClient extends grpc.Client {
  GetFlows(req: Obj): grpc.ClientReadableStream<Obj>;
  ServerStatus: Unary;
  GetNodes: Unary;
  GetNamespaces: Unary;
}

/** A client from the .proto files (proto-loader), not from Membrane's TypeScript. */
function observerClient(address: string, creds = grpc.credentials.createInsecure()): ObserverClient {
  const def = protoLoader.loadSync("observer/observer.proto", {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: [PROTO_DIR, "/usr/include"],
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    observer: { Observer: new (a: string, c: grpc.ChannelCredentials) => ObserverClient };
  };
  return new pkg.observer.Observer(address, creds);
}

const unary = (c: ObserverClient, m: "ServerStatus" | "GetNodes" | "GetNamespaces"): Promise<Obj> =>
  new Promise((resolve, reject) => c[m]({}, (e, r) => (e ? reject(e) : resolve(r ?? {}))));

function flows(c: ObserverClient, req: Obj): Promise<Obj[]> {
  return new Promise((resolve, reject) => {
    const out: Obj[] = [];
    const s = c.GetFlows(req);
    s.on("data", (d: Obj) => out.push(d));
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

const flowOf = (r: Obj): Obj => r["flow"] as Obj;
const dport = (f: Obj): number | undefined =>
  ((f["l4"] as Obj | undefined)?.["TCP"] as Obj | undefined)?.["destination_port"] as number | undefined;
const pod = (f: Obj, side: "source" | "destination"): unknown => (f[side] as Obj | undefined)?.["pod_name"];

describe("Hubble's Observer API on the agent (root)", { skip }, () => {
  test(
    "GetFlows filters as Hubble (whitelist OR, fields AND, blacklist out), follows; status, nodes, namespaces; TLS",
    { timeout: 120_000 },
    async () => {
      const prefix = uniquePrefix("hb");
      const dir = await mkdtemp(join(tmpdir(), "membrane-hubble-"));
      makeCa(dir, ["127.0.0.1"]);
      const clientTls = makeClientCert(dir, "observer");
      let running: RunningAgent | undefined;
      const probes: Probe[] = [];
      const clients: ObserverClient[] = [];
      try {
        running = await startAgent(
          {
            stateDir: join(dir, "state"),
            socketPath: join(dir, "agent.sock"),
            nodeNetns: `${prefix}-node`,
            netnsPrefix: `${prefix}-`,
            podCidr4: "10.203.0.0/24",
            table: "membrane",
            logGroup: 9,
            engine: {},
            logLevel: "error",
            resyncMs: 0,
            observe: { nodeName: "node-a", ringCapacity: 1024 },
            hubble: {
              version: "test-1",
              listen: {
                address: "127.0.0.1:0",
                tls: {
                  certFile: join(dir, "server.pem"),
                  keyFile: join(dir, "server.key"),
                  clientCaFile: join(dir, "ca.pem"),
                },
              },
            },
          },
          pino({ level: "error" }),
        );
        const agent = running.agent;
        const sock = join(dir, "hubble.sock");
        assert.deepEqual(running.hubble?.addresses[0], `unix:${sock}`, "beside the agent's socket");
        assert.equal(statSync(sock).mode & 0o777, 0o660);

        const mk = (name: string) =>
          agent.createEndpointRequest({ name, namespace: "default", labels: { app: name } });
        const api = await mk("api");
        const web = await mk("web");
        const other = await mk("other");
        await agent.applyPolicies(POLICY, "policy.yaml");
        const [pApi, pWeb, pOther] = [
          Probe.start(api.netns),
          Probe.start(web.netns),
          Probe.start(other.netns),
        ];
        probes.push(pApi, pWeb, pOther);
        for (const port of [80, 22]) await pApi.listen("tcp", port);
        assert.equal(await pWeb.tcp(api.ipv4, 80), "ok");
        assert.equal(await pWeb.tcp(api.ipv4, 22), "timeout");
        assert.equal(await pOther.tcp(api.ipv4, 80), "timeout");
        await new Promise((r) => setTimeout(r, 400));

        const c = observerClient(`unix:${sock}`);
        clients.push(c);

        // One filter, its fields ANDed: policy-verdict events that dropped.
        const verdicts = (
          await flows(c, { number: "100", whitelist: [{ verdict: ["DROPPED"], event_type: [{ type: 5 }] }] })
        ).map(flowOf);
        assert.deepEqual(verdicts.map((f) => [pod(f, "source"), dport(f), f["drop_reason_desc"]]).sort(), [
          ["other", 80, "POLICY_DENIED"],
          ["web", 22, "POLICY_DENY"],
        ]);
        const byRule = verdicts.find((f) => dport(f) === 22) as Obj;
        assert.deepEqual(((byRule["ingress_denied_by"] as Obj[])[0] as Obj)["name"], "api-ingress");
        assert.match(String(byRule["uuid"]), /^[0-9a-f-]{36}$/);

        // Two filters ORed, then the blacklist takes the policy verdicts out: the drop events remain.
        const drops = (
          await flows(c, {
            whitelist: [{ source_pod: ["default/other"] }, { destination_port: ["22"] }],
            blacklist: [{ event_type: [{ type: 5 }] }],
          })
        ).map(flowOf);
        assert.ok(drops.length >= 2, JSON.stringify(drops));
        for (const f of drops) {
          assert.deepEqual((f["event_type"] as Obj)["type"], 1, JSON.stringify(f));
          assert.ok(pod(f, "source") === "other" || dport(f) === 22, JSON.stringify(f));
        }

        // number: the last N.
        assert.equal((await flows(c, { number: "1" })).length, 1);

        // A filter Membrane cannot read is refused, naming it.
        await assert.rejects(
          flows(c, { whitelist: [{ source_ip: ["not-an-ip"] }] }),
          (e: grpc.ServiceError) => {
            assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
            assert.match(e.details, /whitelist\[0\]|allowlist\[0\]/);
            assert.match(e.details, /source_ip/);
            return true;
          },
        );

        // follow: new matching flows arrive as they happen.
        const stream = c.GetFlows({
          follow: true,
          whitelist: [{ source_pod: ["default/web"], destination_port: ["80"] }],
        });
        let got: Obj | undefined;
        let failed: unknown;
        stream.on("data", (d: Obj) => (got ??= d));
        stream.on("error", (e: unknown) => (failed ??= e));
        // The subscription may start after a first connection (load): connect until one is followed.
        await until("a flow of web -> api:80 on the followed stream", async () => {
          if (failed !== undefined) throw failed;
          if (got === undefined) assert.equal(await pWeb.tcp(api.ipv4, 80), "ok");
          return got !== undefined;
        });
        const live = flowOf(got as Obj);
        assert.equal(dport(live), 80);
        assert.equal(live["verdict"], "FORWARDED");
        stream.cancel();

        const status = await unary(c, "ServerStatus");
        assert.equal(status["max_flows"], "1024");
        assert.equal(status["version"], "test-1");
        assert.ok(
          Number(status["num_flows"]) > 0 && Number(status["seen_flows"]) >= Number(status["num_flows"]),
        );
        const nodes = (await unary(c, "GetNodes"))["nodes"] as Obj[];
        assert.deepEqual(
          nodes.map((n) => [n["name"], n["state"]]),
          [["node-a", "NODE_CONNECTED"]],
        );
        assert.deepEqual(await unary(c, "GetNamespaces"), { namespaces: [{ namespace: "default" }] });

        // Every flow the agent recorded is a line Hubble's strict parser accepts.
        const recs = agent.observer?.read({ filter: {}, follow: false }) ?? [];
        assert.ok(recs.filter(isFlowRecord).length >= 6);
        assertHubbleStrict(recs, "agent flows");

        // TCP with mutual TLS: a client with a certificate from the CA is served, one without is not.
        const tcp = running.hubble?.addresses[1];
        assert.ok(tcp);
        const ca = clientTls.ca;
        const tlsC = observerClient(tcp, grpc.credentials.createSsl(ca, clientTls.key, clientTls.cert));
        clients.push(tlsC);
        assert.equal((await unary(tlsC, "ServerStatus"))["version"], "test-1");
        const anon = observerClient(tcp, grpc.credentials.createSsl(ca));
        clients.push(anon);
        await assert.rejects(unary(anon, "ServerStatus"));

        // The CLI speaks it: `membrane observe --server unix:...` prints Hubble's JSON.
        const out = await promisify(execFile)(
          process.execPath,
          [
            join(ROOT, "bin/membrane.js"),
            "observe",
            "--server",
            `unix:${sock}`,
            "--verdict",
            "DROPPED",
            "--type",
            "drop",
            "-o",
            "json",
          ],
          { encoding: "utf8" },
        );
        const lines = out.stdout.trim().split("\n");
        assert.ok(lines.length >= 2, out.stdout);
        for (const l of lines)
          assert.deepEqual((parseHubbleStrict(l)["flow"] as Obj)["event_type"], {
            type: 1,
            sub_type: (parseHubbleStrict(l)["flow"] as Obj)["drop_reason"],
          });
        const compact = await promisify(execFile)(
          process.execPath,
          [
            join(ROOT, "bin/membrane.js"),
            "observe",
            "--server",
            `unix:${sock}`,
            "--to-port",
            "22",
            "--type",
            "policy-verdict",
          ],
          { encoding: "utf8" },
        );
        assert.match(
          compact.stdout,
          /default\/web:\d+ \(ID:\d+\) -> default\/api:22 \(ID:\d+\) policy-verdict:\S+ INGRESS DENIED .* by default\/api-ingress/,
        );
      } finally {
        for (const c of clients) c.close();
        for (const p of probes) p.stop();
        await running?.stop();
        await cleanupPrefix(prefix);
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
