import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { request, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { ApiServer, DEFAULT_MAX_BODY } from "../../src/agent/api/server.js";
import type { Route } from "../../src/agent/api/router.js";
import { AgentClient } from "../../src/agent/client.js";
import { MembraneError } from "../../src/errors.js";

const root = mkdtempSync(join(tmpdir(), "membrane-api-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const socketIn = (): string => join(root, `d${n++}`, "run", "agent.sock");

const routes: Route[] = [
  { method: "GET", path: "/v1/echo", handler: (r) => ({ query: Object.fromEntries(r.query) }) },
  { method: "POST", path: "/v1/echo", status: 201, handler: (r) => ({ body: r.body }) },
  {
    method: "POST",
    path: "/v1/size",
    handler: (r) => ({ length: typeof r.body === "string" ? r.body.length : -1 }),
  },
  {
    method: "GET",
    path: "/v1/things/:id",
    handler: (r) => {
      if (r.params["id"] === "missing")
        throw new MembraneError("ENDPOINT_NOT_FOUND", "Cannot show endpoint missing: no such endpoint", {
          hint: "list them with `membrane endpoint list`",
        });
      return { id: r.params["id"] };
    },
  },
  { method: "DELETE", path: "/v1/things/:id", handler: () => undefined },
  {
    method: "POST",
    path: "/v1/invalid",
    handler: () => {
      throw new MembraneError("POLICY_INVALID", "Cannot apply policy.yaml: 1 problem", {
        hint: "fix the field and apply again",
        location: { file: "policy.yaml" },
        issues: [
          {
            file: "policy.yaml",
            line: 7,
            path: "spec.ingress[0].toPorts[0].ports[0].port",
            message: "port 70000 is out of range",
          },
        ],
      });
    },
  },
  {
    method: "GET",
    path: "/v1/conflict",
    handler: () => {
      throw new MembraneError(
        "IPAM_EXHAUSTED",
        "Cannot allocate an IPv4 address for a: all 5 addresses of 10.0.0.0/29 are in use",
      );
    },
  },
  {
    method: "GET",
    path: "/v1/crash",
    handler: () => {
      throw new Error("secret internals");
    },
  },
  {
    kind: "stream",
    method: "GET",
    path: "/v1/flows",
    handler: async (_r, send) => {
      for (let i = 0; i < 3; i++) await send({ flow: i, error: "not an error line: a field" });
    },
  },
  {
    kind: "stream",
    method: "GET",
    path: "/v1/flows-fail",
    handler: async (_r, send) => {
      await send({ flow: 0 });
      throw new MembraneError("STORE_FAILED", "Cannot read flows: the ring buffer went away");
    },
  },
];

/** Raw request, to look at status and headers the client hides. */
function raw(
  socketPath: string,
  method: string,
  path: string,
  body?: string,
  type = "application/json",
): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method, path, headers: body === undefined ? {} : { "Content-Type": type } },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("agent API server and client", () => {
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => logLines.push(s) });
  const socketPath = socketIn();
  const server = new ApiServer({ socketPath, routes, logger });
  const client = new AgentClient({ socketPath });
  before(() => server.start());
  after(() => server.stop());

  test("the socket is 0600 and its directory 0700, both owned by the agent's user", () => {
    const s = statSync(socketPath);
    assert.ok(s.isSocket());
    assert.equal(s.mode & 0o777, 0o600);
    assert.equal(s.uid, process.getuid?.());
    const d = statSync(join(socketPath, ".."));
    assert.equal(d.mode & 0o777, 0o700);
  });

  test("JSON in, JSON out, with the route's status", async () => {
    assert.deepEqual(await client.request("GET", "/v1/echo?a=1&b=x%20y"), { query: { a: "1", b: "x y" } });
    const body = { s: "Grüße 🌍\nline2", n: [1, 2, { x: null }] };
    assert.deepEqual(await client.request("POST", "/v1/echo", body), { body });
    const r = await raw(socketPath, "POST", "/v1/echo", "{}");
    assert.equal(r.status, 201);
    assert.equal(r.headers["content-type"], "application/json; charset=utf-8");
    assert.equal(r.text, '{"body":{}}\n');
  });

  test("path parameters are bound and percent-decoded", async () => {
    assert.deepEqual(await client.request("GET", "/v1/things/default%2Fweb-1"), { id: "default/web-1" });
  });

  test("a handler that returns nothing answers 204 with no body", async () => {
    const r = await raw(socketPath, "DELETE", "/v1/things/x");
    assert.deepEqual([r.status, r.text], [204, ""]);
    assert.equal(await client.request("DELETE", "/v1/things/x"), undefined);
  });

  const errorCases: {
    name: string;
    method: string;
    path: string;
    body?: string;
    type?: string;
    status: number;
    error: Record<string, unknown>;
  }[] = [
    {
      name: "a not-found error is 404 with the handler's message and hint",
      method: "GET",
      path: "/v1/things/missing",
      status: 404,
      error: {
        code: "ENDPOINT_NOT_FOUND",
        message: "Cannot show endpoint missing: no such endpoint",
        hint: "list them with `membrane endpoint list`",
      },
    },
    {
      name: "an invalid-input error is 400 and carries its issues and location",
      method: "POST",
      path: "/v1/invalid",
      body: "{}",
      status: 400,
      error: {
        code: "POLICY_INVALID",
        message: "Cannot apply policy.yaml: 1 problem",
        hint: "fix the field and apply again",
        issues: [
          {
            file: "policy.yaml",
            line: 7,
            path: "spec.ingress[0].toPorts[0].ports[0].port",
            message: "port 70000 is out of range",
          },
        ],
        location: { file: "policy.yaml" },
      },
    },
    {
      name: "a conflict with current state is 409",
      method: "GET",
      path: "/v1/conflict",
      status: 409,
      error: {
        code: "IPAM_EXHAUSTED",
        message: "Cannot allocate an IPv4 address for a: all 5 addresses of 10.0.0.0/29 are in use",
      },
    },
    {
      name: "an unexpected exception is 500 and does not leak its text",
      method: "GET",
      path: "/v1/crash",
      status: 500,
      error: {
        code: "API_FAILED",
        message: "Cannot GET /v1/crash: the agent failed internally",
        hint: "the agent's log has the details",
      },
    },
    {
      name: "an unknown route is 404 API_ROUTE_NOT_FOUND",
      method: "GET",
      path: "/v1/nope",
      status: 404,
      error: {
        code: "API_ROUTE_NOT_FOUND",
        message: "Cannot GET /v1/nope: the agent has no such route",
        hint: "the CLI and the agent may be different versions; compare `membrane version` with the agent's",
      },
    },
    {
      name: "a known path with the wrong method is 405",
      method: "PUT",
      path: "/v1/echo",
      status: 405,
      error: { code: "API_ROUTE_NOT_FOUND", message: "Cannot PUT /v1/echo: the route allows only GET, POST" },
    },
    {
      name: "a body that is not JSON is 400 and its text is not echoed",
      method: "POST",
      path: "/v1/echo",
      body: '{"token": "hunter2"',
      status: 400,
      error: { code: "API_REQUEST_INVALID", message: "Cannot POST /v1/echo: the body is not valid JSON" },
    },
    {
      name: "a body of another content type is 400",
      method: "POST",
      path: "/v1/echo",
      body: "a=1",
      type: "application/x-www-form-urlencoded",
      status: 400,
      error: {
        code: "API_REQUEST_INVALID",
        message:
          'Cannot POST /v1/echo: the body must be JSON (Content-Type: application/json), not "application/x-www-form-urlencoded"',
      },
    },
  ];
  for (const c of errorCases) {
    test(`${c.name}; the client rebuilds the same MembraneError`, async () => {
      const r = await raw(socketPath, c.method, c.path, c.body, c.type);
      assert.equal(r.status, c.status);
      assert.equal(r.headers["content-type"], "application/json; charset=utf-8");
      assert.deepEqual(JSON.parse(r.text), { error: c.error });
      if (c.type !== undefined || c.body?.startsWith('{"token"')) return; // the client always sends valid JSON
      await assert.rejects(
        client.request(c.method, c.path, c.body === undefined ? undefined : JSON.parse(c.body)),
        (e: unknown) => {
          assert.ok(e instanceof MembraneError);
          assert.equal(e.code, c.error["code"]);
          assert.equal(e.message, c.error["message"]);
          assert.equal(e.hint, c.error["hint"]);
          assert.deepEqual(e.issues, c.error["issues"] ?? []);
          assert.deepEqual(e.location, c.error["location"]);
          return true;
        },
      );
    });
  }

  test("every response carries the security headers and no CORS header", async () => {
    for (const [method, path, body] of [
      ["GET", "/v1/echo", undefined],
      ["GET", "/v1/nope", undefined],
      ["GET", "/v1/crash", undefined],
      ["PUT", "/v1/echo", "{}"],
      ["GET", "/v1/flows", undefined],
      ["DELETE", "/v1/things/x", undefined],
    ] as const) {
      const r = await raw(socketPath, method, path, body);
      assert.equal(r.headers["x-content-type-options"], "nosniff", `${method} ${path}`);
      assert.equal(r.headers["cache-control"], "no-store", `${method} ${path}`);
      assert.equal(r.headers["access-control-allow-origin"], undefined, `${method} ${path}`);
    }
  });

  test("a body of exactly the limit is accepted; one byte more is refused with 413 API_REQUEST_INVALID", async () => {
    const atLimit = "x".repeat(DEFAULT_MAX_BODY - 2); // plus the two quotes
    assert.deepEqual(await client.request("POST", "/v1/size", atLimit), { length: DEFAULT_MAX_BODY - 2 });
    const over = JSON.stringify("x".repeat(DEFAULT_MAX_BODY - 1));
    const r = await raw(socketPath, "POST", "/v1/size", over);
    assert.equal(r.status, 413);
    assert.equal(r.headers["x-content-type-options"], "nosniff");
    await assert.rejects(
      client.request("POST", "/v1/size", "x".repeat(DEFAULT_MAX_BODY - 1)),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "API_REQUEST_INVALID" &&
        e.message ===
          `Cannot POST /v1/size: the request body has ${DEFAULT_MAX_BODY + 1} bytes, more than the limit of ${DEFAULT_MAX_BODY}`,
    );
  });

  test("a stream route sends one JSON object per line as application/x-ndjson", async () => {
    const r = await raw(socketPath, "GET", "/v1/flows");
    assert.equal(r.headers["content-type"], "application/x-ndjson");
    assert.equal(r.text.split("\n").length, 4);
    const items: unknown[] = [];
    await client.stream("GET", "/v1/flows", undefined, (i) => items.push(i));
    assert.deepEqual(
      items,
      [0, 1, 2].map((flow) => ({ flow, error: "not an error line: a field" })),
    );
  });

  test("a stream that fails midway ends with an error line, which the client throws", async () => {
    const items: unknown[] = [];
    await assert.rejects(
      client.stream("GET", "/v1/flows-fail", undefined, (i) => items.push(i)),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "STORE_FAILED" &&
        e.message === "Cannot read flows: the ring buffer went away",
    );
    assert.deepEqual(items, [{ flow: 0 }]);
  });

  test("request bodies never reach the log", async () => {
    await client.request("POST", "/v1/echo", { token: "hunter2-in-a-valid-body" });
    await raw(socketPath, "POST", "/v1/echo", '{"token": "hunter2"');
    assert.ok(logLines.length > 0, "requests are logged");
    for (const l of logLines) assert.ok(!l.includes("hunter2"), `log line leaks the body: ${l}`);
  });

  test("a second server on the same socket refuses to start with AGENT_ALREADY_RUNNING", async () => {
    const second = new ApiServer({ socketPath, routes, logger: pino({ level: "silent" }) });
    await assert.rejects(
      second.start(),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "AGENT_ALREADY_RUNNING" &&
        e.message === `Cannot serve the API at ${socketPath}: another agent is answering there`,
    );
    assert.deepEqual(await client.request("GET", "/v1/things/still-served"), { id: "still-served" });
  });
});

describe("agent API: socket lifecycle and unreachable agents", () => {
  const silent = pino({ level: "silent" });

  /** Leaves a socket file with nobody behind it: a process that listened and was killed -9. */
  async function staleSocket(path: string): Promise<void> {
    mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
    const code = `require("net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`;
    const p = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await once(p.stdout, "data");
    } finally {
      p.kill("SIGKILL");
    }
    await once(p, "exit");
    assert.ok(statSync(path).isSocket());
  }

  test("the client says AGENT_UNREACHABLE with a hint when the socket does not exist", async () => {
    const path = socketIn();
    await assert.rejects(new AgentClient({ socketPath: path }).request("GET", "/v1/echo"), (e: unknown) => {
      assert.ok(e instanceof MembraneError);
      assert.equal(e.code, "AGENT_UNREACHABLE");
      assert.equal(e.message, `Cannot reach the agent at ${path}: the socket does not exist`);
      assert.equal(e.hint, "start it with `membrane agent`");
      return true;
    });
  });

  test("the client says AGENT_UNREACHABLE when nothing listens on the socket", async () => {
    const path = socketIn();
    await staleSocket(path);
    await assert.rejects(
      new AgentClient({ socketPath: path }).request("GET", "/v1/echo"),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "AGENT_UNREACHABLE" &&
        e.message === `Cannot reach the agent at ${path}: nothing is listening on the socket`,
    );
  });

  test("a stale socket is removed and the server starts; stop removes its socket", async () => {
    const path = socketIn();
    await staleSocket(path);
    const s = new ApiServer({ socketPath: path, routes, logger: silent });
    await s.start();
    try {
      assert.deepEqual(await new AgentClient({ socketPath: path }).request("GET", "/v1/things/a"), {
        id: "a",
      });
    } finally {
      await s.stop();
    }
    assert.equal(existsSync(path), false);
  });

  test("a regular file at the socket path is left alone and the server refuses to start", async () => {
    const path = socketIn();
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, "not a socket");
    await assert.rejects(
      new ApiServer({ socketPath: path, routes, logger: silent }).start(),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "CONFIG_INVALID" &&
        e.message === `Cannot serve the API at ${path}: a file that is not a socket is in the way`,
    );
    assert.ok(statSync(path).isFile());
  });

  test("an existing directory others may write to is refused, and left unchanged", async () => {
    const path = socketIn();
    const dir = join(path, "..");
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    await assert.rejects(
      new ApiServer({ socketPath: path, routes, logger: silent }).start(),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "CONFIG_INVALID" &&
        e.message ===
          `Cannot serve the API at ${path}: ${dir} must be a directory owned by uid ${process.getuid?.()} that no one else may write to`,
    );
    assert.equal(statSync(dir).mode & 0o777, 0o777);
  });

  test("an existing 0755 directory is used as it is (only a directory the agent creates is set to 0700)", async () => {
    const path = socketIn();
    const dir = join(path, "..");
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
    const s = new ApiServer({ socketPath: path, routes, logger: silent });
    await s.start();
    try {
      assert.equal(statSync(dir).mode & 0o777, 0o755);
      assert.equal(statSync(path).mode & 0o777, 0o600);
    } finally {
      await s.stop();
    }
  });
});
