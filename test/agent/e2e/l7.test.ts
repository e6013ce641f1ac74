/**
 * L7 policy through the agent and its proxy, on real connections (needs root).
 *
 *   endpoints deathstar, tiefighter, xwing, client ── node netns (proxy: 10.212.0.1:15001/15053)
 *                                                        out0 192.0.2.1/24 <── veth ──> "outside" netns
 *                                                        198.51.100.0/24 via .10        192.0.2.10 (dnsmasq :53, HTTP :80)
 *                                                                                       198.51.100.7, .8 (HTTP :80)
 *
 * The kernel redirects connections that L7 rules cover to the node's proxy
 * (DNAT, original destination from conntrack); the proxy answers 403 or
 * forwards. toFQDNs: the DNS proxy holds an answer until its addresses are
 * in the kernel's ipcache, so the very first connection to them is allowed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { flowQuery } from "../../../src/agent/routes.js";
import { filterFromFlags } from "../../../src/observe/index.js";
import type { Flow } from "../../../src/observe/flow.js";
import { explainDrop } from "../../../src/policy/why.js";
import { assertHubbleStrict } from "../../observe/hubble/strict.js";
import type { Probe } from "../../../src/probe/probe.js";
import { AgentLab, rootSkipReason, T } from "./harness.js";
import { until } from "../../support/until.js";

const dnsmasqMissing = (): string | undefined =>
  spawnSync("sh", ["-c", "command -v dnsmasq"], { stdio: "ignore" }).status === 0
    ? undefined
    : "dnsmasq is not installed (scripts/install-system-deps.sh)";

const skip = rootSkipReason() ?? dnsmasqMissing();

const cnp = (name: string, spec: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
${spec
  .trim()
  .split("\n")
  .map((l) => "  " + l)
  .join("\n")}
`;

const STARWARS_L7 = cnp(
  "rule1",
  `
endpointSelector: {matchLabels: {org: empire, class: deathstar}}
ingress:
- fromEndpoints: [{matchLabels: {org: empire}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: POST
        path: /v1/request-landing
`,
);

const CLIENT_EGRESS = cnp(
  "client-egress",
  `
endpointSelector: {matchLabels: {app: client}}
egress:
- toEndpoints: [{matchLabels: {class: deathstar}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /public/.*
      - method: POST
        path: /v1/request-landing
`,
);

const GRPC = cnp(
  "grpc",
  `
endpointSelector: {matchLabels: {class: deathstar}}
ingress:
- fromEndpoints: [{matchLabels: {org: empire}}]
  toPorts:
  - ports: [{port: "50051", protocol: TCP}]
    rules:
      http:
      - method: POST
        path: /empire.Deathstar/RequestLanding
      - method: GET
        path: /healthz
`,
);

const HOST_L7 = cnp(
  "host-l7",
  `
endpointSelector: {matchLabels: {class: deathstar}}
ingress:
- fromEntities: [host]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /healthz
`,
);

/** DNS to the test's server through the proxy (*.example.com), and port 80 to what `matchName` resolves to. */
const fqdnPolicy = (name: string, matchName: string): string =>
  cnp(
    name,
    `
endpointSelector: {matchLabels: {app: client}}
egress:
- toCIDR: [192.0.2.10/32]
  toPorts:
  - ports: [{port: "53", protocol: UDP}]
    rules:
      dns:
      - matchPattern: "*.example.com"
- toFQDNs: [{matchName: ${matchName}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
`,
  );

const FQDN = fqdnPolicy("fqdn", "allowed.example.com");
const FQDN_HELD = fqdnPolicy("fqdn-held", "held.example.com");

describe("agent e2e: L7 proxy (root)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  let outside: Probe;
  let dnsmasq: ChildProcess | undefined;
  const out = (): string => `${lab.prefix}-out`;
  const ds = (): string => lab.ep("deathstar").ip;

  before(async () => {
    lab = await AgentLab.start("l7", { podCidr4: "10.212.0.0/24", podCidr6: "fd00:212::/64", proxy: true });
    for (const [name, labels] of [
      ["deathstar", { org: "empire", class: "deathstar" }],
      ["tiefighter", { org: "empire", class: "tiefighter" }],
      ["xwing", { org: "alliance", class: "xwing" }],
      ["client", { org: "empire", app: "client" }],
    ] as const) {
      await lab.endpoint(name, labels);
    }
    await lab.ep("deathstar").probe.listenHttp(80);
    await lab.ep("deathstar").probe.listenHttp2(50051);
    await lab.outsideNamespace(["198.51.100.7/32", "198.51.100.8/32", "198.51.100.9/32"]);
    outside = lab.probeIn(out());
    await outside.listen("tcp", 80);
    dnsmasq = spawn(
      "ip",
      [
        ...[
          "netns",
          "exec",
          out(),
          "dnsmasq",
          "--no-daemon",
          "--no-resolv",
          "--no-hosts",
          "--bind-interfaces",
        ],
        ...["--listen-address=192.0.2.10", "--port=53", "--user=root", "--pid-file="],
        ...["--address=/allowed.example.com/198.51.100.7", "--address=/other.example.com/198.51.100.8"],
        "--address=/blocked.test/198.51.100.7",
        // A TTL past the proxy's margin (an hour): repeats of this answer are released from what the agent holds.
        "--host-record=held.example.com,198.51.100.9,3600",
      ],
      { stdio: "ignore" },
    );
    // dnsmasq answers once it is bound.
    for (let i = 0; i < 50; i++) {
      if ((await outside.dns("192.0.2.10", "allowed.example.com", 200)).startsWith("NOERROR")) break;
    }
  });
  after(async () => {
    dnsmasq?.kill();
    await lab?.destroy();
  });

  const get = (from: string, method: string, path: string, to = ds()): Promise<string> =>
    lab.ep(from).probe.http(to, 80, { method, path }, 1500);

  test("Star Wars L7: POST /v1/request-landing is forwarded, PUT /v1/exhaust-port gets 403, xwing is dropped at L3/L4", async () => {
    await lab.agent.applyPolicies(STARWARS_L7, "rule1.yaml");
    assert.deepEqual(
      [
        await get("tiefighter", "POST", "/v1/request-landing"),
        await get("tiefighter", "PUT", "/v1/exhaust-port"),
        await get("tiefighter", "GET", "/v1/request-landing"),
        await get("xwing", "POST", "/v1/request-landing"),
      ],
      ["200", "403", "403", "timeout"],
    );
    assert.deepEqual(await lab.agent.datapathDiff(), []);
  });

  test("the proxy's verdicts are L7 flows with method, URL and status; the kernel logs the redirect", async () => {
    // As Hubble: a forwarded request's answer is a RESPONSE from the server (is_reply, sides
    // swapped); a denied request is a REQUEST from the client.
    const line = (f: Flow): string =>
      `${f.verdict} ${f.l7?.type} ${f.l7?.http?.method} ${f.l7?.http?.code} ${f.source?.pod_name} -> ${f.destination?.pod_name} reply=${f.is_reply}`;
    const want = [
      "FORWARDED RESPONSE POST 200 deathstar -> tiefighter reply=true",
      "DROPPED REQUEST PUT 403 tiefighter -> deathstar reply=false",
    ];
    const l7 = await lab.flowsWhen(
      { type: ["l7"] },
      (fs) => want.every((w) => fs.some((f) => line(f) === w)),
      "the L7 flows of the requests above",
    );
    const seen = l7.map(line);
    assert.ok(
      seen.includes("FORWARDED RESPONSE POST 200 deathstar -> tiefighter reply=true"),
      seen.join("\n"),
    );
    assert.ok(seen.includes("DROPPED REQUEST PUT 403 tiefighter -> deathstar reply=false"), seen.join("\n"));
    const redirected = lab.agent.observer?.read(filterFromFlags({ verdict: ["REDIRECTED"] })) ?? [];
    assert.ok(redirected.length >= 2, "the kernel's policy verdict of each redirected connection");
  });

  test("`policy why` on a 403: the connection was allowed, the HTTP rules refused this request, and the rule to add", async () => {
    const isGet = (f: Flow | undefined): boolean => f?.l7?.http?.method === "GET";
    const drops = await lab.flowsWhen(
      { verdict: ["DROPPED"], type: ["l7"] },
      (fs) => isGet(fs[fs.length - 1]),
      "the L7 drop of GET /v1/request-landing",
    );
    const flow = drops[drops.length - 1];
    assert.ok(flow);
    const q = flowQuery(flow);
    assert.deepEqual(q?.http, { method: "GET", path: "/v1/request-landing", host: ds() });
    const a = explainDrop(lab.agent.engine, q as NonNullable<typeof q>);
    assert.equal(a.verdict, "deny");
    assert.deepEqual(a.lines.slice(-3), [
      "The request was GET /v1/request-landing. To allow it, add to the http rules of that port:",
      '  - method: "GET"',
      '    path: "/v1/request-landing"',
    ]);
  });

  test("IPv6: the same L7 verdicts through the IPv6 redirect (DNAT to the node's IPv6 gateway, conntrack v6)", async () => {
    const ds6 = lab.ep("deathstar").view.ipv6;
    assert.ok(ds6 !== undefined);
    assert.deepEqual(
      [
        await get("tiefighter", "POST", "/v1/request-landing", ds6),
        await get("tiefighter", "PUT", "/v1/exhaust-port", ds6),
        await get("xwing", "POST", "/v1/request-landing", ds6),
      ],
      ["200", "403", "timeout"],
    );
  });

  test("egress L7 on the client and ingress L7 on the server: a request must pass both", async () => {
    await lab.agent.applyPolicies(CLIENT_EGRESS, "client.yaml");
    assert.deepEqual(
      [
        await get("client", "POST", "/v1/request-landing"),
        await get("client", "GET", "/public/x"),
        await get("client", "PUT", "/v1/exhaust-port"),
        await get("tiefighter", "POST", "/v1/request-landing"),
      ],
      // GET /public/x: the client's egress allows it, the deathstar's ingress does not.
      ["200", "403", "403", "200"],
    );
    await lab.agent.deletePolicies(CLIENT_EGRESS, "client.yaml");
  });

  test("HTTP/2 and gRPC through the redirect: per-request verdicts, a denied gRPC call gets grpc-status 7", async () => {
    await lab.agent.applyPolicies(GRPC, "grpc.yaml");
    const h2 = (path: string, method = "POST", grpc = true): Promise<string> =>
      lab.ep("tiefighter").probe.http2(ds(), 50051, {
        method,
        path,
        ...(grpc ? { headers: { "content-type": "application/grpc", te: "trailers" } } : {}),
      });
    assert.deepEqual(
      [
        await h2("/empire.Deathstar/RequestLanding"),
        await h2("/empire.Deathstar/ExhaustPort"),
        await h2("/healthz", "GET", false),
        await h2("/admin", "GET", false),
      ],
      ["grpc-status 0", "grpc-status 7", "200", "403"],
    );
    assert.equal(
      await lab.ep("xwing").probe.http2(ds(), 50051, { method: "GET", path: "/healthz" }, T),
      "timeout",
      "not empire: dropped at L3/L4",
    );
    await lab.agent.deletePolicies(GRPC, "grpc.yaml");
  });

  test("the node's own connections are redirected too: an ingress L7 rule for host is enforced, not bypassed", async () => {
    await lab.agent.applyPolicies(HOST_L7, "host.yaml");
    const adminBefore = (await lab.flowsWhen({ type: ["l7"] }, () => true, "flows")).filter((f) =>
      f.l7?.http?.url?.endsWith("/admin"),
    ).length;
    const node = lab.probeIn(lab.node);
    assert.deepEqual(
      [
        await node.http(ds(), 80, { method: "GET", path: "/healthz" }, 1500),
        await node.http(ds(), 80, { method: "GET", path: "/admin" }, 1500),
      ],
      ["200", "403"],
    );
    // This request's flow is the one more /admin flow than before it (earlier tests' may name other sources).
    const admin = (fs: Flow[]): Flow[] => fs.filter((f) => f.l7?.http?.url?.endsWith("/admin") === true);
    const seen = admin(
      await lab.flowsWhen({ type: ["l7"] }, (fs) => admin(fs).length > adminBefore, "the flow of GET /admin"),
    );
    assert.equal(seen.length, adminBefore + 1, "one L7 flow for the /admin request");
    assert.equal(seen[seen.length - 1]?.source?.identity, 1, "the proxy names the node as host (identity 1)");
    await lab.agent.deletePolicies(HOST_L7, "host.yaml");
  });

  test("a connection sent straight to the proxy's own port, with L7 rules that admit it, is reset and not forwarded to the proxy again", async () => {
    // The node's address and the proxy's port, allowed with an HTTP rule (any peer): it reaches the
    // proxy, whose original destination (conntrack) is the proxy itself. Forwarding it would connect
    // to the proxy again (a loop); it is refused at once with a flow that says why.
    const SELF = cnp(
      "to-proxy",
      `
endpointSelector: {matchLabels: {app: client}}
egress:
- toEntities: [all]
  toPorts:
  - ports: [{port: "15001", protocol: TCP}]
    rules:
      http:
      - method: GET
        path: /.*
`,
    );
    await lab.agent.applyPolicies(SELF, "self.yaml");
    try {
      const why = "sent to the L7 proxy itself, not redirected to it";
      const selfFlows = (fs: Flow[]): Flow[] => fs.filter((f) => f.drop_reason_detail === why);
      // The node's IPv4 and IPv6 gateway addresses, where the proxy listens.
      const r = [
        await lab.ep("client").probe.http("10.212.0.1", 15001, { method: "GET", path: "/selfloop" }, 1500),
        await lab.ep("client").probe.http("fd00:212::1", 15001, { method: "GET", path: "/selfloop" }, 1500),
      ];
      // Reset at once. Without the check the proxy admitted the request and forwarded it to
      // itself: a second connection, refused there (the node has no L7 entry), so a 502.
      assert.deepEqual(r, ["ECONNRESET", "ECONNRESET"]);
      const seen = selfFlows(
        await lab.flowsWhen({ type: ["l7"] }, (fs) => selfFlows(fs).length > 1, "the refusals"),
      );
      // One refusal each: the client's connection, never a second hop by the proxy to itself.
      assert.equal(seen.length, 2, JSON.stringify(seen));
    } finally {
      await lab.agent.deletePolicies(SELF, "self.yaml");
    }
  });

  test("toFQDNs: only a name the client resolved through the DNS proxy is reachable, from the first connection", async () => {
    await lab.agent.applyPolicies(FQDN, "fqdn.yaml");
    const client = lab.ep("client").probe;
    assert.equal(await client.tcp("198.51.100.7", 80, T), "timeout", "not resolved yet: no identity");
    assert.equal(await client.dns("192.0.2.10", "blocked.test"), "REFUSED", "no DNS rule matches");
    assert.equal(await client.dns("192.0.2.10", "allowed.example.com"), "NOERROR 198.51.100.7");
    assert.equal(await client.tcp("198.51.100.7", 80, T), "ok", "the first connection after the answer");
    assert.equal(await client.dns("192.0.2.10", "other.example.com"), "NOERROR 198.51.100.8");
    assert.equal(
      await client.tcp("198.51.100.8", 80, T),
      "timeout",
      "resolved, but toFQDNs does not name it",
    );
    assert.equal(await lab.ep("tiefighter").probe.tcp("198.51.100.7", 80, T), "ok", "no policy selects it");
    // An answer goes from the server to the client (is_reply): name the client and the server.
    const line = (f: Flow): string =>
      f.is_reply === true
        ? `${f.verdict} ${f.l7?.dns?.query} from ${f.destination?.pod_name} to ${f.IP?.source}:${"UDP" in (f.l4 ?? {}) ? "udp" : "tcp"} (answer)`
        : `${f.verdict} ${f.l7?.dns?.query} from ${f.source?.pod_name} to ${f.IP?.destination}:${"UDP" in (f.l4 ?? {}) ? "udp" : "tcp"}`;
    const wantDns = [
      "DROPPED blocked.test. from client to 192.0.2.10:udp",
      "FORWARDED allowed.example.com. from client to 192.0.2.10:udp (answer)",
    ];
    const dns = (
      await lab.flowsWhen(
        { protocol: ["dns"] },
        (fs) => wantDns.every((w) => fs.some((f) => line(f) === w)),
        "the DNS flows of the lookups above",
      )
    ).map(line);
    assert.ok(dns.includes("DROPPED blocked.test. from client to 192.0.2.10:udp"), dns.join("\n"));
    assert.ok(
      dns.includes("FORWARDED allowed.example.com. from client to 192.0.2.10:udp (answer)"),
      dns.join("\n"),
    );
    // The answer's details cross from the proxy into the flow (validate.ts l7EventFrom keeps them).
    const answer = (await lab.flowsWhen({ protocol: ["dns"] }, () => true, "the DNS flows")).find(
      (f) => f.is_reply === true && f.l7?.dns?.query === "allowed.example.com.",
    );
    assert.deepEqual(answer?.l7?.dns?.ips, ["198.51.100.7"]);
    assert.deepEqual(answer?.l7?.dns?.rrtypes, ["A"]);
    assert.equal(answer?.l7?.dns?.ttl, 0, "dnsmasq's TTL");
    // dnsmasq answers with TTL 0: the address lives for the minimum TTL (2 s here), then new
    // connections are denied until the name is resolved again.
    await new Promise((r) => setTimeout(r, 2600));
    assert.equal(await client.tcp("198.51.100.7", 80, T), "timeout", "expired");
    assert.equal(await client.dns("192.0.2.10", "allowed.example.com"), "NOERROR 198.51.100.7");
    assert.equal(await client.tcp("198.51.100.7", 80, T), "ok", "resolved again");
    await lab.agent.deletePolicies(FQDN, "fqdn.yaml");
  });

  test("toFQDNs: a repeat of a held answer goes without the round trip; a name the agent forgot is enforced again before its answer", async () => {
    await lab.agent.applyPolicies(FQDN_HELD, "fqdn-held.yaml");
    try {
      const client = lab.ep("client").probe;
      assert.equal(await client.dns("192.0.2.10", "held.example.com"), "NOERROR 198.51.100.9");
      assert.equal(await client.tcp("198.51.100.9", 80, T), "ok", "the first connection after the answer");
      // The agent holds it for the hour: the proxy releases this one at once.
      assert.equal(await client.dns("192.0.2.10", "held.example.com"), "NOERROR 198.51.100.9");
      assert.equal(await client.tcp("198.51.100.9", 80, T), "ok");
      // Forgotten (as if expired): out of the kernel, and withdrawn from the proxy before that.
      const learned = (): boolean => lab.agent.ipcache().some((e) => e.prefix.startsWith("198.51.100.9/"));
      await lab.agent.forgetDnsAnswer("held.example.com", ["198.51.100.9"]);
      assert.equal(learned(), false, "forgotten");
      assert.equal(await client.tcp("198.51.100.9", 80, T), "timeout", "forgotten");
      // Released from a stale cache, this answer would reach the client before the agent learned the
      // address again (only the dns-seen notice, a moment later, would teach it).
      assert.equal(await client.dns("192.0.2.10", "held.example.com"), "NOERROR 198.51.100.9");
      assert.equal(learned(), true, "enforced before the answer");
      assert.equal(await client.tcp("198.51.100.9", 80, T), "ok", "resolved again");
    } finally {
      await lab.agent.deletePolicies(FQDN_HELD, "fqdn-held.yaml");
    }
  });

  test("a burst of DNS answers for new names is enforced in a few batched transactions, not one each", async () => {
    const txCount = async (): Promise<number> => {
      const text =
        (await lab.agent.observer?.metrics.registry.getSingleMetricAsString(
          "membrane_nft_transaction_duration_seconds",
        )) ?? "";
      return Number(/_count (\d+)/.exec(text)?.[1] ?? "NaN");
    };
    const before = await txCount();
    const names = Array.from({ length: 40 }, (_, i) => `burst-${i}.example.com`);
    await Promise.all(names.map((n, i) => lab.agent.observeDnsAnswer(n, [`203.0.113.${i + 1}`], 60)));
    const used = (await txCount()) - before;
    assert.ok(used >= 1 && used <= 5, `${used} transactions for 40 answers`);
  });

  test("the proxy runs without root (uid 1337, no capabilities), in the proxy group", async () => {
    const pid = lab.agent.proxyPid;
    assert.ok(pid !== undefined);
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const field = (k: string): string => (new RegExp(`^${k}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "").trim();
    assert.equal(field("Uid").split(/\s+/).join(" "), "1337 1337 1337 1337");
    assert.equal(field("Gid").split(/\s+/)[0], "1337");
    assert.equal(field("CapEff"), "0000000000000000");
  });

  test("a dead proxy fails closed (no request passes unproxied), and the agent restarts it", async () => {
    await lab.agent.applyPolicies(STARWARS_L7, "rule1.yaml");
    const pid = lab.agent.proxyPid;
    assert.ok(pid !== undefined);
    process.kill(pid, "SIGKILL");
    const during = await get("tiefighter", "PUT", "/v1/exhaust-port");
    assert.notEqual(during, "200");
    assert.notEqual(during, "403", "nobody answered at L7 while the proxy was down");
    // The restart backs off (longer under load): ask until the restarted proxy answers.
    let after = "";
    await until(
      "a 200 through the restarted proxy",
      async () => {
        after = await get("tiefighter", "POST", "/v1/request-landing");
        return after === "200";
      },
      { every: 100, detail: () => `last answer: ${after}` },
    );
    assert.notEqual(lab.agent.proxyPid, pid);
    assert.equal(
      await get("tiefighter", "PUT", "/v1/exhaust-port"),
      "403",
      "the restarted proxy has the policy",
    );
  });

  test("nothing the proxy sent was dropped: status says so per process, /metrics has the counter", async () => {
    assert.deepEqual(lab.agent.status().ipcDropped, { proxy: {} }, "no gateway on this node");
    const text = await lab.agent.observer?.metrics.registry.getSingleMetricAsString(
      "membrane_ipc_dropped_total",
    );
    assert.match(text ?? "", /^# TYPE membrane_ipc_dropped_total counter$/m);
  });

  test("every flow these tests produced (HTTP, gRPC, DNS, kernel verdicts, drops) is a line Hubble's strict parser accepts", () => {
    const recs = lab.agent.observer?.read(filterFromFlags({})) ?? [];
    assert.ok(recs.some((r) => "flow" in r && r.flow.l7?.dns !== undefined));
    assert.ok(recs.some((r) => "flow" in r && r.flow.l7?.http !== undefined));
    assertHubbleStrict(recs, "L7 e2e flows");
  });
});
