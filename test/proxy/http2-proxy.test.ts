import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { OutgoingHttpHeaders } from "node:http2";
import type { HttpRule } from "../../src/policy/types.js";
import type { L7Event, L7LookupResult } from "../../src/proxy/types.js";
import {
  grpcFrame,
  h2request,
  httpSpec,
  INFO,
  policyOf,
  startH2Harness,
  type H2Harness,
} from "./http2-harness.js";

const DENIED = "Access denied\r\n";
const REFUSED_STREAM = 7;

async function withHarness(
  params: Parameters<typeof startH2Harness>[0],
  f: (h: H2Harness) => Promise<void>,
): Promise<void> {
  const h = await startH2Harness(params);
  try {
    await f(h);
  } finally {
    await h.close();
  }
}

const req = (method: string, path: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({
  ":method": method,
  ":path": path,
  ":authority": "svc.local",
  ...extra,
});

/** The event without its latency (asserted to be a number >= 0). */
function stable(e: L7Event | undefined): Omit<L7Event, "latencyMs"> | undefined {
  if (!e) return undefined;
  const { latencyMs, ...rest } = e;
  assert.ok(typeof latencyMs === "number" && latencyMs >= 0, `latencyMs ${String(latencyMs)}`);
  return rest;
}

const BASE = {
  type: "http",
  httpVersion: "HTTP/2",
  srcIdentity: INFO.srcIdentity,
  dstIdentity: INFO.dstIdentity,
  endpoint: INFO.endpoint,
  direction: INFO.direction,
} as const;

describe("HTTP/2 proxy: verdicts per request", () => {
  const cases: {
    name: string;
    rules: HttpRule[];
    headers: OutgoingHttpHeaders;
    body?: string;
    status: number;
    response: string;
    upstreamPath?: string;
  }[] = [
    {
      name: "an allowed GET is forwarded and its status and body come back",
      rules: [{ method: "GET", path: "/public/.*", headers: [] }],
      headers: req("GET", "/public/a"),
      status: 200,
      response: "ok GET /public/a 0",
      upstreamPath: "/public/a",
    },
    {
      name: "a denied PUT gets 403 Access denied and nothing reaches upstream",
      rules: [{ method: "GET", path: "/public/.*", headers: [] }],
      headers: req("PUT", "/public/a"),
      body: "payload",
      status: 403,
      response: DENIED,
    },
    {
      name: "an allowed POST carries its body upstream",
      rules: [{ method: "POST", headers: [] }],
      headers: req("POST", "/upload", { "content-length": "5" }),
      body: "hello",
      status: 200,
      response: "ok POST /upload 5",
      upstreamPath: "/upload",
    },
    {
      name: "dot-dot out of an allowed prefix is judged as the path it resolves to",
      rules: [{ path: "/public/.*", headers: [] }],
      headers: req("GET", "/public/../admin"),
      status: 403,
      response: DENIED,
    },
    {
      name: "the normalised path is the one forwarded",
      rules: [{ path: "/public/.*", headers: [] }],
      headers: req("GET", "/public/x/../%7Ea"),
      status: 200,
      response: "ok GET /public/~a 0",
      upstreamPath: "/public/~a",
    },
    {
      name: "path regex matches the whole path: a prefix is not enough",
      rules: [{ path: "/public", headers: [] }],
      headers: req("GET", "/public/x"),
      status: 403,
      response: DENIED,
    },
    {
      name: "header presence rule: present header passes",
      rules: [{ headers: [{ name: "X-Token" }] }],
      headers: req("GET", "/any", { "x-token": "whatever" }),
      status: 200,
      response: "ok GET /any 0",
      upstreamPath: "/any",
    },
    {
      name: "header presence rule: missing header is denied",
      rules: [{ headers: [{ name: "X-Token" }] }],
      headers: req("GET", "/any"),
      status: 403,
      response: DENIED,
    },
    {
      name: "header exact value rule: equal value passes",
      rules: [{ headers: [{ name: "x-role", value: "admin" }] }],
      headers: req("GET", "/any", { "x-role": "admin" }),
      status: 200,
      response: "ok GET /any 0",
      upstreamPath: "/any",
    },
    {
      name: "header exact value rule: other value is denied",
      rules: [{ headers: [{ name: "x-role", value: "admin" }] }],
      headers: req("GET", "/any", { "x-role": "Admin" }),
      status: 403,
      response: DENIED,
    },
    {
      name: "header exact value rule: a repeated header is judged joined, so it is not the exact value",
      rules: [{ headers: [{ name: "x-role", value: "admin" }] }],
      headers: req("GET", "/any", { "x-role": ["admin", "guest"] }),
      status: 403,
      response: DENIED,
    },
    {
      name: "host rule matches :authority",
      rules: [{ host: "svc\\.local", headers: [] }],
      headers: req("GET", "/any"),
      status: 200,
      response: "ok GET /any 0",
      upstreamPath: "/any",
    },
    {
      name: "host rule: another :authority is denied",
      rules: [{ host: "svc\\.local", headers: [] }],
      headers: req("GET", "/any", { ":authority": "evil.local" }),
      status: 403,
      response: DENIED,
    },
    {
      name: "host rule: :authority includes the port, as Envoy matches it",
      rules: [{ host: "svc\\.local", headers: [] }],
      headers: req("GET", "/any", { ":authority": "svc.local:8080" }),
      status: 403,
      response: DENIED,
    },
  ];
  for (const c of cases) {
    test(c.name, () =>
      withHarness({ policy: policyOf(c.rules) }, async (h) => {
        const r = await h2request(h.client(), c.headers, c.body);
        assert.equal(r.status, c.status);
        assert.equal(r.body.toString(), c.response);
        assert.equal(r.rstCode, 0);
        if (c.status === 403) assert.equal(r.headers["content-type"], "text/plain");
        assert.deepEqual(
          h.seen.map((s) => s.path),
          c.upstreamPath ? [c.upstreamPath] : [],
        );
        assert.equal(h.upstreamConnections(), c.upstreamPath ? 1 : 0);
      }),
    );
  }
});

describe("HTTP/2 proxy: gRPC", () => {
  const grpcHeaders = (path: string, ct = "application/grpc"): OutgoingHttpHeaders =>
    req("POST", path, { "content-type": ct, te: "trailers" });
  const rules: HttpRule[] = [{ method: "POST", path: "/shop\\.Catalog/(Get|List)Item", headers: [] }];

  test("an allowed method reaches upstream and upstream's trailers (grpc-status 0) come back", () =>
    withHarness({ policy: policyOf(rules) }, async (h) => {
      const r = await h2request(
        h.client(),
        grpcHeaders("/shop.Catalog/GetItem"),
        grpcFrame(Buffer.from("item-1")),
      );
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-type"], "application/grpc");
      assert.deepEqual(r.body, grpcFrame(Buffer.from("echo:item-1")));
      assert.equal(r.trailers?.["grpc-status"], "0");
      assert.equal(h.seen[0]?.path, "/shop.Catalog/GetItem");
      assert.deepEqual(h.seen[0]?.body, grpcFrame(Buffer.from("item-1")));
      assert.equal(h.seen[0]?.raw[h.seen[0].raw.indexOf("te") + 1], "trailers");
    }));

  const denied: { name: string; path: string; ct?: string }[] = [
    {
      name: "a method outside the path regex is denied with trailers-only grpc-status 7",
      path: "/shop.Catalog/DeleteItem",
    },
    { name: "another service is denied with grpc-status 7", path: "/admin.Users/GetItem" },
    {
      name: "application/grpc+proto is gRPC too",
      path: "/shop.Catalog/DeleteItem",
      ct: "application/grpc+proto",
    },
  ];
  for (const c of denied) {
    test(c.name, () =>
      withHarness({ policy: policyOf(rules) }, async (h) => {
        const r = await h2request(h.client(), grpcHeaders(c.path, c.ct), grpcFrame(Buffer.from("x")));
        assert.equal(r.status, 200);
        assert.equal(r.headersEnded, true, "trailers-only response");
        assert.equal(r.headers["content-type"], "application/grpc");
        assert.equal(r.headers["grpc-status"], "7");
        assert.equal(r.headers["grpc-message"], "Access denied");
        assert.equal(r.body.length, 0);
        assert.equal(h.seen.length, 0);
        assert.deepEqual(stable(h.events[0]), {
          ...BASE,
          verdict: "denied",
          method: "POST",
          url: `http://svc.local${c.path}`,
          status: 200,
          reason: "no HTTP rule matched",
        });
      }),
    );
  }

  test("application/grpc-web is not gRPC to Envoy: a plain 403", () =>
    withHarness({ policy: policyOf(rules) }, async (h) => {
      const r = await h2request(
        h.client(),
        grpcHeaders("/shop.Catalog/DeleteItem", "application/grpc-web"),
        "x",
      );
      assert.equal(r.status, 403);
      assert.equal(r.body.toString(), DENIED);
    }));

  test("request trailers reach upstream", () =>
    withHarness({ policy: policyOf(rules) }, async (h) => {
      const r = await h2request(
        h.client(),
        grpcHeaders("/shop.Catalog/ListItem"),
        grpcFrame(Buffer.from("a")),
        {
          trailers: { "x-checksum": "abc" },
        },
      );
      assert.equal(r.trailers?.["grpc-status"], "0");
      assert.deepEqual(h.seen[0]?.trailers, ["x-checksum", "abc"]);
    }));
});

describe("HTTP/2 proxy: streams of one connection", () => {
  test("many concurrent streams, some denied and some allowed, each get their own verdict", () =>
    withHarness({}, async (h) => {
      const c = h.client();
      const paths = Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? `/admin/${i}` : `/public/slow/${i}`));
      const rs = await Promise.all(paths.map((p) => h2request(c, req("GET", p))));
      assert.deepEqual(
        rs.map((r) => r.status),
        paths.map((p) => (p.startsWith("/admin") ? 403 : 200)),
      );
      rs.forEach((r, i) => {
        const p = paths[i] as string;
        assert.equal(r.body.toString(), p.startsWith("/admin") ? DENIED : `ok GET ${p} 0`);
      });
      assert.equal(h.upstreamConnections(), 1);
      assert.deepEqual(h.seen.map((s) => s.path).sort(), paths.filter((p) => p.startsWith("/public")).sort());
      assert.equal(h.events.filter((e) => e.verdict === "denied").length, 20);
      assert.equal(h.events.filter((e) => e.verdict === "forwarded").length, 40);
    }));

  test("a policy change between two requests on the same connection applies to the second", () =>
    withHarness({}, async (h) => {
      const c = h.client();
      const first = await h2request(c, req("GET", "/public/a"));
      h.setPolicy(policyOf([{ path: "/other", headers: [] }]));
      const second = await h2request(c, req("GET", "/public/a"));
      const third = await h2request(c, req("GET", "/other"));
      assert.deepEqual([first.status, second.status, third.status], [200, 403, 200]);
      assert.equal(h.upstreamConnections(), 1);
    }));

  const failClosed: { name: string; lookup: () => L7LookupResult | undefined; reason: string }[] = [
    {
      name: "no policy: the stream is refused",
      lookup: () => undefined,
      reason: "no L7 policy for this connection",
    },
    {
      name: "a lookup that throws: the stream is refused",
      lookup: () => {
        throw new Error("store down");
      },
      reason: "no L7 policy for this connection",
    },
    {
      name: "a stage with another parser: the stream is refused",
      lookup: () => ({
        ...policyOf([{ headers: [] }]),
        also: { spec: { ...httpSpec([]), parser: "kafka" }, allowAll: true },
      }),
      reason: "no L7 policy for this connection",
    },
    {
      name: "rules that do not compile: the stream is refused",
      lookup: () => policyOf([{ path: "(?=x)", headers: [] }]),
      reason:
        'cannot apply the HTTP rules: Cannot compile HTTP path regex "(?=x)" of rule 0: error parsing regexp: invalid or unsupported Perl syntax: `(?=`',
    },
  ];
  for (const c of failClosed) {
    test(c.name, () =>
      withHarness({}, async (h) => {
        h.setLookup(c.lookup);
        const r = await h2request(h.client(), req("GET", "/public/a"));
        assert.equal(r.status, undefined);
        assert.equal(r.rstCode, REFUSED_STREAM);
        assert.equal(h.seen.length, 0);
        assert.deepEqual(stable(h.events[0]), {
          ...BASE,
          verdict: "error",
          method: "GET",
          url: "http://svc.local/public/a",
          reason: c.reason,
        });
      }),
    );
  }
});

describe("HTTP/2 proxy: `also` stage (both ends have L7 rules)", () => {
  const cases: { name: string; policy: L7LookupResult; path: string; status: number }[] = [
    {
      name: "passing both stages is forwarded",
      policy: policyOf([{ path: "/public/.*", headers: [] }], policyOf([{ method: "GET", headers: [] }])),
      path: "/public/a",
      status: 200,
    },
    {
      name: "passing the first stage only is denied",
      policy: policyOf([{ path: "/public/.*", headers: [] }], policyOf([{ path: "/public/b", headers: [] }])),
      path: "/public/a",
      status: 403,
    },
    {
      name: "passing the second stage only is denied",
      policy: policyOf([{ path: "/public/b", headers: [] }], policyOf([{ path: "/public/.*", headers: [] }])),
      path: "/public/a",
      status: 403,
    },
    {
      name: "an allow-all first stage leaves the decision to the second",
      policy: { spec: httpSpec([]), allowAll: true, also: policyOf([{ path: "/public/b", headers: [] }]) },
      path: "/public/a",
      status: 403,
    },
  ];
  for (const c of cases) {
    test(c.name, () =>
      withHarness({ policy: c.policy }, async (h) => {
        const r = await h2request(h.client(), req("GET", c.path));
        assert.equal(r.status, c.status);
        assert.equal(h.seen.length, c.status === 200 ? 1 : 0);
      }),
    );
  }
});

describe("HTTP/2 proxy: L7 events", () => {
  test("forwarded, denied: one event each, exact fields, no header values", () =>
    withHarness(
      {
        policy: policyOf([
          { path: "/x", headers: [] },
          { path: "/public/.*", headers: [] },
        ]),
      },
      async (h) => {
        const c = h.client();
        await h2request(c, req("GET", "/public/a?q=1", { authorization: "secret-token" }));
        await h2request(c, req("DELETE", "/admin", { authorization: "secret-token" }));
        assert.equal(h.events.length, 2);
        assert.deepEqual(stable(h.events[0]), {
          ...BASE,
          verdict: "forwarded",
          method: "GET",
          url: "http://svc.local/public/a?q=1",
          status: 200,
          rule: 1,
        });
        assert.deepEqual(stable(h.events[1]), {
          ...BASE,
          verdict: "denied",
          method: "DELETE",
          url: "http://svc.local/admin",
          status: 403,
          reason: "no HTTP rule matched",
        });
        assert.ok(!JSON.stringify(h.events).includes("secret-token"));
      },
    ));

  test("a throwing sink loses the event, not the request", async () => {
    const h = await startH2Harness({});
    try {
      h.events.push = () => {
        throw new Error("sink bug");
      };
      const r = await h2request(h.client(), req("GET", "/public/a"));
      assert.equal(r.status, 200);
    } finally {
      await h.close();
    }
  });
});
