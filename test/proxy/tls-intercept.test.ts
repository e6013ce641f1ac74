import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { L7Spec } from "../../src/policy/mapstate.js";
import type { HttpRule, TlsContext } from "../../src/policy/types.js";
import { handleTlsInterceptConnection } from "../../src/proxy/tls/intercept.js";
import { TlsSecretStore } from "../../src/proxy/tls/secrets.js";
import type { L7LookupResult } from "../../src/proxy/types.js";
import { makeTlsFixtures, type TlsFixtures } from "./fixtures/tls-certs.js";
import {
  rawClient,
  startHttpsUpstream,
  startProxy,
  tlsClient,
  type Handler,
  type Upstream,
} from "./fixtures/tls-harness.js";

const FORBIDDEN =
  "HTTP/1.1 403 Forbidden\r\ncontent-length: 15\r\ncontent-type: text/plain\r\n\r\nAccess denied\r\n";
const BAD_GATEWAY =
  "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 13\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Gateway\r\n";

const RULES: HttpRule[] = [{ method: "GET", path: "/allowed", headers: [] }];
const TERMINATING: TlsContext = { secret: { name: "intercept" } };
const ORIGINATING: TlsContext = { secret: { namespace: "kube-system", name: "upstream-ca" } };

function spec(extra: Partial<L7Spec> = {}): L7Spec {
  return {
    parser: "http",
    http: RULES,
    dns: [],
    kafka: [],
    serverNames: [],
    terminatingTLS: TERMINATING,
    originatingTLS: ORIGINATING,
    ...extra,
  };
}

function without(kind: "terminatingTLS" | "originatingTLS"): L7Spec {
  const { [kind]: _dropped, ...rest } = spec();
  return rest;
}

const req = (method: string, path: string): string =>
  `${method} ${path} HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n`;
/** A whole response (with Content-Length) has arrived. */
function oneResponse(t: string): boolean {
  const end = t.indexOf("\r\n\r\n");
  const cl = /content-length: *(\d+)/i.exec(t.slice(0, end));
  return end >= 0 && cl !== null && t.length >= end + 4 + Number(cl[1]);
}

let fx: TlsFixtures;
let secretsDir: string;
before(() => {
  fx = makeTlsFixtures();
  fx.secret("default", "intercept", { "tls.crt": fx.interceptApi.cert, "tls.key": fx.interceptApi.key });
  fx.secret("kube-system", "upstream-ca", { "ca.crt": fx.ca.cert });
  fx.secret("kube-system", "rogue-ca", { "ca.crt": fx.rogue.cert });
  fx.secret("default", "mtls", {
    "tls.crt": fx.interceptApi.cert,
    "tls.key": fx.interceptApi.key,
    "ca.crt": fx.ca.cert,
  });
  secretsDir = fx.secret("default", "broken", { "tls.crt": "not PEM", "tls.key": fx.interceptApi.key });
});
after(() => fx.cleanup());

const interceptHandler =
  (store: TlsSecretStore): Handler =>
  (client, info, lookup, sink) =>
    handleTlsInterceptConnection(client, info, {
      lookup,
      sink,
      secrets: store,
      connectUpstream: (host, port) => net.connect(port, host),
    });

async function withSetup(
  upstreamPair: "api" | "rogueApi" | "other" | "plain",
  policy: L7LookupResult | undefined,
  body: (
    proxyPort: number,
    up: Upstream,
    events: import("../../src/proxy/types.js").L7Event[],
  ) => Promise<void>,
): Promise<void> {
  const up = await startHttpsUpstream(upstreamPair === "plain" ? undefined : fx[upstreamPair]);
  const proxy = await startProxy(up.port, policy, interceptHandler(new TlsSecretStore({ dir: secretsDir })));
  try {
    await body(proxy.port, up, proxy.events);
  } finally {
    await proxy.close();
    await up.close();
  }
}

describe("TLS interception: HTTP rules on decrypted traffic", () => {
  test("GET /allowed passes: the client trusts the terminating cert, upstream TLS sees the request and the SNI", () =>
    withSetup("api", { spec: spec(), allowAll: false }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("GET", "/allowed"),
        until: oneResponse,
      });
      assert.equal(r.secure, true, "the client verified the terminating certificate");
      assert.match(r.received, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(r.received, /\r\n\r\nhello GET \/allowed$/);
      assert.deepEqual(up.requests, ["GET /allowed api.example.com"]);
      assert.deepEqual(up.servernames, ["api.example.com"], "the client's SNI is sent upstream");
      assert.equal(events.length, 1);
      assert.equal(events[0]?.type, "http");
      assert.equal(events[0]?.verdict, "forwarded");
      assert.equal(events[0]?.status, 200);
      assert.match(events[0]?.url ?? "", /^https:\/\//, "an intercepted request is shown as https");
    }));

  test("PUT /denied gets 403 Access denied over TLS; upstream sees nothing", () =>
    withSetup("api", { spec: spec(), allowAll: false }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("PUT", "/denied"),
        until: (t) => t.length >= FORBIDDEN.length,
      });
      assert.equal(r.secure, true);
      assert.equal(r.received, FORBIDDEN);
      assert.equal(up.connections(), 0);
      assert.equal(events[0]?.verdict, "denied");
      assert.equal(events[0]?.status, 403);
    }));

  test("the decrypted request goes through the same judge: `Connection: host` under TLS gets 400, upstream sees nothing", () =>
    withSetup(
      "api",
      { spec: spec({ http: [{ host: "api\\.example\\.com", headers: [] }] }), allowAll: false },
      async (port, up, events) => {
        const r = await tlsClient(port, {
          servername: "api.example.com",
          ca: fx.intercept.cert,
          send: "GET /allowed HTTP/1.0\r\nHost: api.example.com\r\nConnection: host\r\n\r\n",
          until: oneResponse,
        });
        assert.match(r.received, /^HTTP\/1\.1 400 Bad Request\r\n/);
        assert.equal(up.connections(), 0);
        assert.equal(events[0]?.status, 400);
      },
    ));

  test("an L4 allow on the port (allowAll) shadows the HTTP rules: PUT /denied passes, still decrypted", () =>
    withSetup("api", { spec: spec(), allowAll: true }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("PUT", "/denied"),
        until: oneResponse,
      });
      assert.match(r.received, /\r\n\r\nhello PUT \/denied$/);
      assert.deepEqual(up.requests, ["PUT /denied api.example.com"]);
      assert.equal(events[0]?.verdict, "forwarded");
    }));

  test("a policy gone by the time of the request: the decrypted connection is reset (TCP reset under TLS)", async () => {
    const up = await startHttpsUpstream(fx.api);
    const store = new TlsSecretStore({ dir: secretsDir });
    const handler: Handler = (client, info, lookup, sink) => {
      let calls = 0;
      // Lookups: connection start, after the ClientHello, HTTP start; gone at the request.
      const fading = {
        forConnection: (k: Parameters<typeof lookup.forConnection>[0]) =>
          ++calls <= 3 ? lookup.forConnection(k) : undefined,
      };
      handleTlsInterceptConnection(client, info, {
        lookup: fading,
        sink,
        secrets: store,
        connectUpstream: (host, port) => net.connect(port, host),
      });
    };
    const proxy = await startProxy(up.port, { spec: spec(), allowAll: false }, handler);
    try {
      const r = await tlsClient(proxy.port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("GET", "/allowed"),
        until: oneResponse,
      });
      assert.equal(r.secure, true);
      assert.equal(r.received, "");
      assert.equal(r.error, "ECONNRESET");
      assert.equal(up.connections(), 0);
      assert.equal(proxy.events[0]?.type, "http");
      assert.equal(proxy.events[0]?.reason, "no L7 policy for this connection");
    } finally {
      await proxy.close();
      await up.close();
    }
  });

  test("an upstream certificate not signed by trustedCA: 502 Bad Gateway and a tls error flow saying why", () =>
    withSetup("rogueApi", { spec: spec(), allowAll: false }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("GET", "/allowed"),
        until: (t) => t.length >= BAD_GATEWAY.length,
      });
      assert.equal(r.received, BAD_GATEWAY);
      assert.deepEqual(up.requests, [], "no request reached the impostor");
      const tlsErr = events.find((e) => e.type === "tls");
      assert.equal(tlsErr?.verdict, "error");
      assert.equal(tlsErr?.reason, "upstream TLS handshake failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      assert.equal(tlsErr?.sni, "api.example.com");
      assert.equal(events.find((e) => e.type === "http")?.status, 502);
    }));

  test("an upstream certificate for another name than the client's SNI: 502", () =>
    withSetup("other", { spec: spec(), allowAll: false }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("GET", "/allowed"),
        until: (t) => t.length >= BAD_GATEWAY.length,
      });
      assert.equal(r.received, BAD_GATEWAY);
      assert.deepEqual(up.requests, []);
      assert.equal(
        events.find((e) => e.type === "tls")?.reason,
        "upstream TLS handshake failed: ERR_TLS_CERT_ALTNAME_INVALID",
      );
    }));

  test("trustedCA of another CA (rogue-ca secret) rejects the real upstream: 502", () =>
    withSetup(
      "api",
      {
        spec: spec({ originatingTLS: { secret: { namespace: "kube-system", name: "rogue-ca" } } }),
        allowAll: false,
      },
      async (port, up) => {
        const r = await tlsClient(port, {
          servername: "api.example.com",
          ca: fx.intercept.cert,
          send: req("GET", "/allowed"),
          until: (t) => t.length >= BAD_GATEWAY.length,
        });
        assert.equal(r.received, BAD_GATEWAY);
        assert.deepEqual(up.requests, []);
      },
    ));

  test("without originatingTLS the decrypted request goes upstream in plaintext (as Cilium's raw socket)", () =>
    withSetup("plain", { spec: without("originatingTLS"), allowAll: false }, async (port, up) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.intercept.cert,
        send: req("GET", "/allowed"),
        until: oneResponse,
      });
      assert.match(r.received, /\r\n\r\nhello GET \/allowed$/);
      assert.deepEqual(up.requests, ["GET /allowed api.example.com"]);
    }));
});

describe("TLS interception: the client side", () => {
  test("serverNames are checked before the handshake: an SNI not listed is reset", () =>
    withSetup(
      "api",
      { spec: spec({ serverNames: ["www.example.com"] }), allowAll: false },
      async (port, up, events) => {
        const r = await tlsClient(port, {
          servername: "api.example.com",
          ca: fx.intercept.cert,
          send: req("GET", "/allowed"),
        });
        assert.equal(r.error, "ECONNRESET");
        assert.equal(r.secure, false);
        assert.equal(up.connections(), 0);
        assert.equal(events[0]?.type, "tls");
        assert.equal(events[0]?.verdict, "denied");
        assert.equal(events[0]?.sni, "api.example.com");
      },
    ));

  test("serverNames given and no SNI: denied", () =>
    withSetup(
      "api",
      { spec: spec({ serverNames: ["*.example.com"] }), allowAll: false },
      async (port, _up, events) => {
        const r = await tlsClient(port, {
          ca: fx.intercept.cert,
          checkName: false,
          send: req("GET", "/allowed"),
        });
        assert.equal(r.error, "ECONNRESET");
        assert.equal(events[0]?.reason, "no SNI in the ClientHello");
      },
    ));

  test("a client that does not trust the terminating CA fails its handshake; a tls error flow", () =>
    withSetup("api", { spec: spec(), allowAll: false }, async (port, up, events) => {
      const r = await tlsClient(port, {
        servername: "api.example.com",
        ca: fx.ca.cert,
        send: req("GET", "/allowed"),
      });
      assert.equal(r.secure, false);
      assert.equal(r.error, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      assert.equal(up.connections(), 0);
      await new Promise((res) => setTimeout(res, 50));
      assert.equal(events[0]?.type, "tls");
      assert.equal(events[0]?.verdict, "error");
      assert.match(
        events[0]?.reason ?? "",
        /^client (TLS handshake failed: |closed the connection during the TLS handshake)/,
      );
      assert.equal(events.length, 1);
    }));

  test("a terminating secret with ca.crt requires a client certificate signed by it (as Envoy)", () =>
    withSetup(
      "api",
      { spec: spec({ terminatingTLS: { secret: { name: "mtls" } } }), allowAll: false },
      async (port, up) => {
        const without = await tlsClient(port, {
          servername: "api.example.com",
          ca: fx.intercept.cert,
          send: req("GET", "/allowed"),
          until: oneResponse,
        });
        assert.doesNotMatch(without.received, /HTTP\/1\.1 200/);
        assert.notEqual(without.error, undefined);
        const withCert = await tlsClient(port, {
          servername: "api.example.com",
          ca: fx.intercept.cert,
          cert: fx.client,
          send: req("GET", "/allowed"),
          until: oneResponse,
        });
        assert.match(withCert.received, /\r\n\r\nhello GET \/allowed$/);
        assert.deepEqual(up.requests, ["GET /allowed api.example.com"]);
      },
    ));

  test("a terminating secret that does not load: reset, the flow names the file", () =>
    withSetup(
      "api",
      { spec: spec({ terminatingTLS: { secret: { name: "broken" } } }), allowAll: false },
      async (port, up, events) => {
        const r = await tlsClient(port, { servername: "api.example.com", ca: fx.intercept.cert, send: "x" });
        assert.equal(r.error, "ECONNRESET");
        assert.equal(up.connections(), 0);
        assert.equal(
          events[0]?.reason,
          `Cannot load TLS secret default/broken (terminatingTLS): ${secretsDir}/default/broken/tls.crt holds no PEM certificate`,
        );
      },
    ));

  const failClosed: { name: string; policy: L7LookupResult | undefined; reason: string }[] = [
    { name: "no policy: reset", policy: undefined, reason: "no TLS policy for this connection" },
    {
      name: "an HTTP policy without terminatingTLS: reset",
      policy: { spec: without("terminatingTLS"), allowAll: false },
      reason: "no terminatingTLS in the policy",
    },
    {
      name: "two stages naming different terminatingTLS secrets: reset",
      policy: {
        spec: spec(),
        allowAll: false,
        also: { spec: spec({ terminatingTLS: { secret: { name: "mtls" } } }), allowAll: false },
      },
      reason: "stages name different terminatingTLS secrets",
    },
    {
      name: "a stage of another parser: reset",
      policy: { spec: spec(), allowAll: false, also: { spec: { ...spec(), parser: "tls" }, allowAll: true } },
      reason: "not an HTTP policy on every stage",
    },
  ];
  for (const c of failClosed) {
    test(c.name, () =>
      withSetup("api", c.policy, async (port, up, events) => {
        const r = await rawClient(port, [Buffer.from("\x16\x03\x01")]);
        assert.equal(r.reset, true);
        assert.equal(up.connections(), 0);
        assert.equal(events[0]?.verdict, "error");
        assert.equal(events[0]?.reason, c.reason);
      }),
    );
  }
});
