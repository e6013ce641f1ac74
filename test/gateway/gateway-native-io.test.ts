/**
 * The gateway's HTTP/1.1 path on the native socket I/O add-on (src/gateway/upstream-conn.ts,
 * forward-h1.ts, exchange.ts) against Node's streams, the same cases in both modes, real TCP
 * on loopback: kept-alive requests, pipelined requests split across writes, a 12 MB
 * response to a client that reads late (checked by SHA-256), a close-delimited response, a
 * backend that dies mid-response, a refused backend (503), smuggling framings (400, nothing
 * upstream), the client's FIN, and the gateway's stop closing taken connections.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { compileGateways } from "../../src/gateway/compile.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import { GatewayServer } from "../../src/gateway/server.js";
import { nativeIoStats, proxyIo } from "../../src/proxy/http/native-io.js";
import { until } from "../support/until.js";
import { CLASS, gatewayYaml } from "./fixtures.js";

const BIG = 12 * 1024 * 1024;
const bigBody = Buffer.alloc(BIG, "membrane-gateway-");

/** A raw HTTP/1.1 backend: answers by path; counts the bytes it received. */
async function startBackend(): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    socks.add(s);
    s.on("close", () => socks.delete(s));
    s.on("error", () => undefined);
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      received += d.length;
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.subarray(end + 4 + len);
        const path = head.split(" ")[1] ?? "";
        if (path === "/big") {
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BIG}\r\n\r\n`);
          s.write(bigBody);
        } else if (path === "/close") {
          s.end("HTTP/1.0 200 OK\r\n\r\nuntil the end");
        } else if (path === "/die") {
          s.write("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial");
          s.end(); // FIN before the length is met
        } else {
          const body = `ok ${path}`;
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    close: () =>
      new Promise((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const yaml = (
  listen: number,
): string => `${CLASS}${gatewayYaml("gw", [`{name: http, port: ${listen}, protocol: HTTP}`], { namespace: "t" })}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: t}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /refused}}]
    backendRefs: [{name: refused, port: 80}]
  - backendRefs: [{name: up, port: 80}]
`;

/** A client connection that collects everything the gateway sends, and when it closed. */
class Client {
  readonly sock: net.Socket;
  private chunks: Buffer[] = [];
  length = 0;
  closed = false;
  constructor(port: number) {
    this.sock = net.connect({ host: "127.0.0.1", port });
    this.sock.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.length += d.length;
    });
    this.sock.on("error", () => undefined);
    this.sock.on("close", () => void (this.closed = true));
  }
  get got(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }
  clear(): void {
    this.chunks = [];
    this.length = 0;
  }
  text(): string {
    return this.got.toString("latin1");
  }
  count(s: string): number {
    return this.text().split(s).length - 1;
  }
}

const io = proxyIo("native");
for (const mode of ["native", "stream"] as const) {
  describe(
    `gateway HTTP/1.1 over ${mode === "native" ? "the native socket I/O add-on" : "Node's streams"} (loopback)`,
    { skip: mode === "native" && !io ? "the native add-on is not built" : false },
    () => {
      // prettier-ignore
      let backend: Awaited<ReturnType<typeof startBackend>>;
      let server: GatewayServer;
      let port: number;
      const clients: Client[] = [];
      const client = (): Client => {
        const c = new Client(port);
        clients.push(c);
        return c;
      };

      before(async () => {
        backend = await startBackend();
        port = await freePort();
        // A port nothing listens on: connections to it are refused.
        const refusedPort = await freePort();
        const { table } = compileGateways({
          resources: parseGatewayResources(yaml(port), "gw.yaml"),
          hasService: (_ns, name) => name === "up" || name === "refused",
          namespaceLabels: () => ({}),
          certificateProblem: () => "no certificates here",
          servicePort: (_ns, name) => ({ targetPort: name === "up" ? backend.port : refusedPort }),
          addresses: ["127.0.0.1"],
          now: new Date().toISOString(),
        });
        server = new GatewayServer({ endpoints: () => ["127.0.0.1"], keyPair: () => undefined, io: mode });
        await server.update(table);
      });
      after(async () => {
        for (const c of clients) c.sock.destroy();
        await server?.stop();
        await backend?.close();
      });

      test(`50 requests on one kept-alive connection are answered in order${mode === "native" ? "; the client's and the backend's fds are taken" : "; no fd is taken"}`, async () => {
        // prettier-ignore
        const taken0 = nativeIoStats.taken;
        const c = client();
        for (let i = 0; i < 50; i++) {
          c.sock.write(`GET /n${i} HTTP/1.1\r\nhost: a\r\n\r\n`);
          await until(`answer ${i}`, () => c.count("HTTP/1.1 200") === i + 1, { every: 1, detail: () => c.text().slice(-200) }); // prettier-ignore
        }
        const bodies = [...c.text().matchAll(/ok (\/n\d+)/g)].map((m) => m[1]);
        assert.deepEqual(
          bodies,
          Array.from({ length: 50 }, (_, i) => `/n${i}`),
        );
        const taken = nativeIoStats.taken - taken0;
        if (mode === "native") assert.ok(taken >= 2, `client and backend fds taken: ${taken}`);
        else assert.equal(taken, 0);
      });

      test("three pipelined requests split mid-line are answered in order", async () => {
        const c = client();
        const wire = Buffer.from("GET /p1 HTTP/1.1\r\nhost: a\r\n\r\nGET /p2 HTTP/1.1\r\nhost: a\r\n\r\nGET /p3 HTTP/1.1\r\nhost: a\r\n\r\n"); // prettier-ignore
        for (const [a, b] of [
          [0, 7],
          [7, 40],
          [40, wire.length],
        ] as const) {
          c.sock.write(wire.subarray(a, b));
          await new Promise((r) => setImmediate(r));
        }
        await until("three answers", () => c.count("HTTP/1.1 200") === 3, { detail: () => c.text() });
        assert.deepEqual(
          [...c.text().matchAll(/ok (\/p\d)/g)].map((m) => m[1]),
          ["/p1", "/p2", "/p3"],
        );
      });

      test("a 12 MB response to a client that reads late arrives whole (SHA-256), then the connection serves again", async () => {
        // prettier-ignore
        const c = client();
        c.sock.pause();
        c.sock.write("GET /big HTTP/1.1\r\nhost: a\r\n\r\n");
        await new Promise((r) => setTimeout(r, 300)); // the gateway meets a full socket buffer
        c.sock.resume();
        await until("the whole body", () => c.length >= BIG + 38, { detail: () => `${c.length} bytes` });
        const headEnd = c.got.indexOf("\r\n\r\n") + 4;
        const body = c.got.subarray(headEnd, headEnd + BIG);
        const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
        assert.equal(sha(body), sha(bigBody));
        c.clear();
        c.sock.write("GET /again HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("the next answer", () => c.text().includes("ok /again"), { detail: () => c.text().slice(0, 200) }); // prettier-ignore
      });

      test("a close-delimited (HTTP/1.0) response: the body whole, then the client connection closes", async () => {
        const c = client();
        c.sock.write("GET /close HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("closed", () => c.closed, { detail: () => c.text() });
        assert.match(c.text(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: close\r\n\r\nuntil the end$/);
      });

      test("a backend dying mid-response cuts the client connection; one refusing answers 503", async () => {
        const c = client();
        c.sock.write("GET /die HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("cut", () => c.closed, { detail: () => c.text() });
        assert.match(c.text(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\npartial$/);
        const r = client();
        r.sock.write("GET /refused HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("503 and close", () => r.closed, { detail: () => r.text() });
        assert.match(r.text(), /^HTTP\/1\.1 503 /);
      });

      for (const [name, req] of [
        ["content-length and transfer-encoding", "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"], // prettier-ignore
        [
          "two content-lengths",
          "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        ],
        ["a bare LF", "GET /x HTTP/1.1\nhost: a\r\n\r\n"],
        ["a space before the colon", "GET /x HTTP/1.1\r\nhost : a\r\n\r\n"],
      ] as const)
        test(`smuggling framing refused: ${name} -> 400, closed, nothing upstream`, async () => {
          const before = backend.received();
          const c = client();
          c.sock.write(req);
          await until("400 and close", () => c.closed, { detail: () => c.text() });
          assert.match(c.text(), /^HTTP\/1\.1 400 /);
          assert.equal(backend.received(), before);
        });

      test("the client's FIN after a request: answered, then closed", async () => {
        const c = client();
        c.sock.end("GET /fin HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("answered and closed", () => c.closed, { detail: () => c.text() });
        assert.match(c.text(), /ok \/fin$/);
      });

      test("the gateway stopping closes an open kept-alive client connection", async () => {
        const c = client();
        c.sock.write("GET /k HTTP/1.1\r\nhost: a\r\n\r\n");
        await until("answer", () => c.text().includes("ok /k"));
        await server.stop();
        await until("closed by the stop", () => c.closed);
      });
    },
  );
}
