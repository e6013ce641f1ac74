import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { handleTlsSniConnection, type TlsSniLimits } from "../../src/proxy/tls/sni.js";
import type { L7LookupResult } from "../../src/proxy/types.js";
import { makeTlsFixtures, type TlsFixtures } from "./fixtures/tls-certs.js";
import {
  captureClientHello,
  rawClient,
  sleep,
  startProxy,
  startRawSink,
  startTlsEcho,
  tlsClient,
  tlsSpec,
  type Handler,
} from "./fixtures/tls-harness.js";

const sniHandler =
  (limits: Partial<TlsSniLimits> = {}): Handler =>
  (client, info, lookup, sink) =>
    handleTlsSniConnection(client, info, {
      lookup,
      sink,
      limits,
      connectUpstream: (host, port) => net.connect(port, host),
    });

const policy = (serverNames: string[], extra: Partial<L7LookupResult> = {}): L7LookupResult => ({
  spec: tlsSpec(serverNames),
  allowAll: false,
  ...extra,
});

let fx: TlsFixtures;
before(() => {
  fx = makeTlsFixtures();
});
after(() => fx.cleanup());

describe("TLS SNI proxy: serverNames", () => {
  const cases: {
    name: string;
    serverNames: string[];
    sni: string | undefined;
    allowed: boolean;
    /** The server certificate (api.example.com, *.example.com) covers the name. */
    certCovers?: boolean;
  }[] = [
    {
      name: "an SNI listed in serverNames passes",
      serverNames: ["api.example.com"],
      sni: "api.example.com",
      allowed: true,
    },
    {
      name: "an SNI not listed is reset",
      serverNames: ["api.example.com"],
      sni: "other.example.org",
      allowed: false,
    },
    {
      name: "*.example.com admits one label: www.example.com",
      serverNames: ["*.example.com"],
      sni: "www.example.com",
      allowed: true,
    },
    {
      name: "*.example.com does not admit two labels: a.b.example.com",
      serverNames: ["*.example.com"],
      sni: "a.b.example.com",
      allowed: false,
    },
    {
      name: "*.example.com does not admit example.com",
      serverNames: ["*.example.com"],
      sni: "example.com",
      allowed: false,
    },
    {
      name: "**.example.com admits several labels: a.b.example.com",
      serverNames: ["**.example.com"],
      sni: "a.b.example.com",
      allowed: true,
      certCovers: false,
    },
    {
      name: "matching ignores case: API.Example.COM",
      serverNames: ["api.example.com"],
      sni: "API.Example.COM",
      allowed: true,
    },
    { name: "a ClientHello without SNI is denied", serverNames: ["*"], sni: undefined, allowed: false },
    {
      name: "any of several serverNames admits",
      serverNames: ["x.example.org", "api.example.com"],
      sni: "api.example.com",
      allowed: true,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const up = await startTlsEcho(fx.api);
      const proxy = await startProxy(up.port, policy(c.serverNames), sniHandler());
      try {
        const r = await tlsClient(proxy.port, {
          ...(c.sni !== undefined ? { servername: c.sni } : {}),
          ca: fx.ca.cert,
          send: "ping",
          until: (t) => t === "echo:ping",
          checkName: c.certCovers ?? c.sni !== undefined,
        });
        const sni = c.sni?.toLowerCase();
        if (c.allowed) {
          assert.equal(r.error, undefined);
          assert.equal(r.secure, true, "the client verified the real server's certificate");
          assert.equal(r.received, "echo:ping");
          assert.equal(up.connections(), 1);
          assert.deepEqual(up.servernames, [c.sni], "the server sees the client's own bytes");
          assert.deepEqual(proxy.events, [
            {
              type: "tls",
              verdict: "forwarded",
              srcIdentity: 1001,
              dstIdentity: 2002,
              endpoint: "default/client",
              direction: "egress",
              sni,
            },
          ]);
        } else {
          assert.equal(r.error, "ECONNRESET");
          assert.equal(r.secure, false);
          assert.equal(up.connections(), 0, "the server never sees the connection");
          assert.equal(proxy.events.length, 1);
          assert.equal(proxy.events[0]?.verdict, "denied");
          assert.equal(proxy.events[0]?.sni, sni);
          assert.equal(
            proxy.events[0]?.reason,
            sni === undefined ? "no SNI in the ClientHello" : "SNI matches no serverNames",
          );
        }
      } finally {
        await proxy.close();
        await up.close();
      }
    });
  }
});

describe("TLS SNI proxy: stages and policy", () => {
  const cases: {
    name: string;
    policy: L7LookupResult | undefined;
    sni: string;
    allowed: boolean;
    verdict: "forwarded" | "denied" | "error";
    reason?: string;
  }[] = [
    {
      name: "an L4 allow on the port (allowAll) shadows serverNames: any SNI passes",
      policy: policy(["other.example.org"], { allowAll: true }),
      sni: "api.example.com",
      allowed: true,
      verdict: "forwarded",
    },
    {
      name: "with an `also` stage, the SNI must pass both stages (passes both)",
      policy: policy(["*.example.com"], { also: policy(["api.example.com"]) }),
      sni: "api.example.com",
      allowed: true,
      verdict: "forwarded",
    },
    {
      name: "with an `also` stage, the SNI must pass both stages (fails the second)",
      policy: policy(["*.example.com"], { also: policy(["api.example.com"]) }),
      sni: "www.example.com",
      allowed: false,
      verdict: "denied",
      reason: "SNI matches no serverNames",
    },
    {
      name: "no policy known for the connection: reset (fail closed)",
      policy: undefined,
      sni: "api.example.com",
      allowed: false,
      verdict: "error",
      reason: "no TLS policy for this connection",
    },
    {
      name: "a stage with another parser (http): reset (fail closed)",
      policy: policy(["api.example.com"], {
        also: { spec: { ...tlsSpec([]), parser: "http" }, allowAll: true },
      }),
      sni: "api.example.com",
      allowed: false,
      verdict: "error",
      reason: "no TLS policy for this connection",
    },
    {
      name: "an SNI policy with no serverNames admits nothing",
      policy: policy([]),
      sni: "api.example.com",
      allowed: false,
      verdict: "denied",
      reason: "SNI matches no serverNames",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const up = await startTlsEcho(fx.api);
      const proxy = await startProxy(up.port, c.policy, sniHandler());
      try {
        const r = await tlsClient(proxy.port, {
          servername: c.sni,
          ca: fx.ca.cert,
          send: "x",
          until: (t) => t === "echo:x",
        });
        assert.equal(r.received, c.allowed ? "echo:x" : "");
        assert.equal(r.error, c.allowed ? undefined : "ECONNRESET");
        assert.equal(up.connections(), c.allowed ? 1 : 0);
        assert.equal(proxy.events[0]?.verdict, c.verdict);
        if (c.reason !== undefined) assert.equal(proxy.events[0]?.reason, c.reason);
      } finally {
        await proxy.close();
        await up.close();
      }
    });
  }
});

describe("TLS SNI proxy: hostile and broken input", () => {
  test("garbage instead of a ClientHello is reset; the server never sees a connection", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["*"]), sniHandler());
    try {
      const r = await rawClient(proxy.port, [Buffer.from("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")]);
      assert.equal(r.reset, true);
      assert.equal(r.received.length, 0);
      assert.equal(up.connections(), 0);
      assert.equal(proxy.events.length, 1);
      assert.equal(proxy.events[0]?.verdict, "error");
      assert.equal(proxy.events[0]?.reason, "ClientHello: not a TLS handshake record");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("a ClientHello that never completes is reset after helloTimeoutMs", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["*"]), sniHandler({ helloTimeoutMs: 150 }));
    try {
      const hello = await captureClientHello("api.example.com");
      const started = Date.now();
      const r = await rawClient(proxy.port, [hello.subarray(0, 20)]);
      assert.equal(r.reset, true);
      assert.ok(Date.now() - started >= 140);
      assert.equal(up.connections(), 0);
      assert.equal(proxy.events[0]?.reason, "no complete ClientHello within 150 ms");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("a ClientHello larger than maxHelloBytes is reset", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["*"]), sniHandler({ maxHelloBytes: 64 }));
    try {
      const r = await rawClient(proxy.port, [await captureClientHello("api.example.com")]);
      assert.equal(r.reset, true);
      assert.equal(up.connections(), 0);
      assert.equal(proxy.events[0]?.reason, "ClientHello: ClientHello too large");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("a client that ends inside its ClientHello is reset with an error flow", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["*"]), sniHandler());
    try {
      const hello = await captureClientHello("api.example.com");
      const r = await rawClient(proxy.port, [hello.subarray(0, 30)], { end: true });
      assert.equal(r.reset, true);
      assert.equal(proxy.events[0]?.reason, "connection ended inside the ClientHello");
      assert.equal(up.connections(), 0);
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("a client that closes before sending anything leaves no flow", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["*"]), sniHandler());
    try {
      const r = await rawClient(proxy.port, [], { end: true });
      assert.equal(r.closed, true);
      await sleep(30);
      assert.deepEqual(proxy.events, []);
      assert.equal(up.connections(), 0);
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("a ClientHello arriving in pieces is reassembled; upstream gets exactly the client's bytes, then the rest", async () => {
    const up = await startRawSink();
    const proxy = await startProxy(up.port, policy(["api.example.com"]), sniHandler());
    try {
      const hello = await captureClientHello("api.example.com");
      const rest = Buffer.from("after the hello");
      const cut = [hello.subarray(0, 3), hello.subarray(3, 60), hello.subarray(60), rest];
      const r = rawClient(proxy.port, cut, { timeoutMs: 400 });
      await sleep(200);
      assert.deepEqual(up.bytes(), Buffer.concat([hello, rest]));
      assert.equal((await r).reset, false);
      assert.equal(proxy.events[0]?.verdict, "forwarded");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("bytes the caller already read (head) are parsed and replayed first", async () => {
    const up = await startTlsEcho(fx.api);
    const handler: Handler = (client, info, lookup, sink) =>
      client.once("data", (first: Buffer) => {
        client.pause();
        handleTlsSniConnection(
          client,
          info,
          { lookup, sink, connectUpstream: (host, port) => net.connect(port, host) },
          first,
        );
      });
    const proxy = await startProxy(up.port, policy(["api.example.com"]), handler);
    try {
      const r = await tlsClient(proxy.port, {
        servername: "api.example.com",
        ca: fx.ca.cert,
        send: "hi",
        until: (t) => t === "echo:hi",
      });
      assert.equal(r.secure, true);
      assert.equal(r.received, "echo:hi");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("an upstream that refuses the connection: the client is reset, the flow says why", async () => {
    const closed = await startRawSink();
    const port = closed.port;
    await closed.close();
    const proxy = await startProxy(port, policy(["api.example.com"]), sniHandler());
    try {
      const r = await tlsClient(proxy.port, { servername: "api.example.com", ca: fx.ca.cert, send: "x" });
      assert.equal(r.error, "ECONNRESET");
      assert.equal(proxy.events.length, 1);
      assert.equal(proxy.events[0]?.verdict, "error");
      assert.equal(proxy.events[0]?.reason, "upstream connection failed: ECONNREFUSED");
      assert.equal(proxy.events[0]?.sni, "api.example.com");
    } finally {
      await proxy.close();
    }
  });

  test("a throwing flow sink loses the event, never the connection", async () => {
    const up = await startTlsEcho(fx.api);
    const handler: Handler = (client, info, lookup) =>
      handleTlsSniConnection(client, info, {
        lookup,
        sink: () => {
          throw new Error("sink bug");
        },
        connectUpstream: (host, port) => net.connect(port, host),
      });
    const proxy = await startProxy(up.port, policy(["api.example.com"]), handler);
    try {
      const r = await tlsClient(proxy.port, {
        servername: "api.example.com",
        ca: fx.ca.cert,
        send: "x",
        until: (t) => t === "echo:x",
      });
      assert.equal(r.received, "echo:x");
    } finally {
      await proxy.close();
      await up.close();
    }
  });
});
