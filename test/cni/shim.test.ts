/**
 * The native membrane-cni shim (native/membrane-cni-shim.c, built into
 * dist/bin/membrane-cni) against the same spec cases as the Node plugin
 * (spec-cases.ts): a real process talking to a real agent API server on a
 * unix socket, whose /v1/cni/invoke runs the plugin with the test's fake
 * agent behind it. Every answer must equal run()'s for the same input
 * (stdout, exit status, what the agent was asked); then what only the shim
 * does: the Node fallback (no agent, an agent without the route, input it
 * does not read), and an agent that dies or stays silent after the request.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { cniInvokeRoute } from "../../src/agent/api/cni-invoke.js";
import { ApiServer } from "../../src/agent/api/server.js";
import type { Route } from "../../src/agent/api/router.js";
import { run, type AgentCall } from "../../src/cni/plugin.js";
import { agent, CASES, conf, ENV, PREV } from "./spec-cases.js";

const SHIM = fileURLToPath(new URL("../../../dist/bin/membrane-cni", import.meta.url));

interface Out {
  stdout: string;
  status: number;
}

function exec(env: Record<string, string>, stdin: string): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = spawn(SHIM, [], { env: { PATH: process.env["PATH"] ?? "", ...env }, timeout: 60_000 });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.on("error", reject);
    child.on("close", (status) =>
      resolve({ stdout: Buffer.concat(out).toString("utf8"), status: status ?? -1 }),
    );
    child.stdin.on("error", () => undefined); // the shim may stop reading past 1 MiB
    child.stdin.end(stdin);
  });
}

let dir = "";
let sock = "";
let server: ApiServer | undefined;
/** The fake agent behind /v1/cni/invoke; each test sets it. */
let inner: AgentCall = agent().call;

async function serve(routes: Route[]): Promise<void> {
  await server?.stop();
  server = new ApiServer({ socketPath: sock, routes, logger: pino({ level: "silent" }) });
  await server.start();
}
const invoke = (): Promise<void> => serve([cniInvokeRoute((...a) => inner(...a))]);

/** The shim's answer and run()'s for the same input and the same fake agent's answer. */
async function both(
  env: Record<string, string>,
  stdin: string,
  answer?: unknown,
): Promise<{ shim: Out; ref: Out; shimCalls: unknown[][]; refCalls: unknown[][] }> {
  const s = agent(answer ?? {});
  inner = s.call;
  const input = stdin.replaceAll('"/run/x.sock"', JSON.stringify(sock));
  const shim = await exec(env, input);
  const r = agent(answer ?? {});
  const out = await run(env, input, r.call);
  return {
    shim,
    ref: { stdout: out.stdout === "" ? "" : `${out.stdout}\n`, status: out.status },
    shimCalls: s.calls,
    refCalls: r.calls,
  };
}

describe("the native membrane-cni shim answers as the Node plugin (real agent socket)", () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "membrane-cni-shim-"));
    sock = join(dir, "run", "agent.sock");
    await invoke();
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    test(`${c.name} (shim = run())`, async () => {
      const { shim, ref, shimCalls, refCalls } = await both(c.env, c.stdin, c.agent);
      assert.equal(shim.status, 1, shim.stdout);
      const e = JSON.parse(shim.stdout) as Record<string, unknown>;
      assert.equal(e["code"], c.code, shim.stdout);
      assert.match(String(e["details"]), c.details);
      assert.deepEqual(shim, ref);
      assert.deepEqual(shimCalls, refCalls);
    });
  }

  test("ADD, standalone ADD, DEL, CHECK, GC, STATUS succeed with run()'s output and the same requests", async () => {
    const cniResult = { interfaces: [{ name: "mbc7" }], ips: [{ address: "10.210.0.7/32" }], routes: [] };
    const runs: [Record<string, string>, string, unknown][] = [
      [
        { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME=My_Web;MEMBRANE_LABELS=app:web" },
        conf({ prevResult: PREV }),
        {},
      ],
      [{ ...ENV, CNI_COMMAND: "ADD" }, conf(), { cniResult }],
      [{ ...ENV, CNI_COMMAND: "DEL" }, conf({ prevResult: PREV }), {}],
      [{ ...ENV, CNI_COMMAND: "CHECK" }, conf({ prevResult: PREV }), {}],
      [
        { CNI_COMMAND: "GC" },
        conf({ "cni.dev/valid-attachments": [{ containerID: "c1abc", ifname: "eth0" }] }),
        {},
      ],
      [{ CNI_COMMAND: "STATUS" }, conf(), {}],
    ];
    for (const [env, stdin, answer] of runs) {
      const { shim, ref, shimCalls, refCalls } = await both(env, stdin, answer);
      assert.equal(shim.status, 0, `${env["CNI_COMMAND"]}: ${shim.stdout}`);
      assert.deepEqual(shim, ref);
      assert.deepEqual(shimCalls, refCalls);
    }
  });

  test("hostile values (quotes, backslashes, control characters, non-ASCII, a duplicate socket key) reach the agent exactly as run() reads them", async () => {
    const labels = { 'a"b': "c\\d", "e\u0001": "f\u007f\n", ü: "€ 😀" };
    const env = { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: 'K8S_POD_NAME=x"y\\z;MEMBRANE_LABELS=k:v\u0002' };
    for (const stdin of [
      conf({ prevResult: PREV, labels }),
      `{"socket":"/nowhere.sock",${conf({ prevResult: PREV }).slice(1)}`, // the last key wins, as in JSON.parse
      conf({ prevResult: PREV, runtimeConfig: { x: ["}", "]", '"', { y: "{" }] } }),
    ]) {
      const { shim, ref, shimCalls, refCalls } = await both(env, stdin);
      assert.deepEqual(shim, ref);
      assert.deepEqual(shimCalls, refCalls);
      assert.equal(shimCalls.length, 1, shim.stdout);
    }
  });

  test("VERSION and a call by hand need no agent (the Node plugin answers)", async () => {
    const v = await exec({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    assert.deepEqual(
      [v.status, JSON.parse(v.stdout)],
      [0, { cniVersion: "1.0.0", supportedVersions: ["1.0.0", "1.1.0"] }],
    );
    const byHand = await exec({}, "");
    assert.equal(byHand.status, 1);
    assert.equal((JSON.parse(byHand.stdout) as { code: number }).code, 4);
  });

  test("no agent at the socket: ADD fails closed with 11 (the Node plugin's error, nothing else ran)", async () => {
    const out = await exec(
      { ...ENV, CNI_COMMAND: "ADD" },
      conf({ prevResult: PREV, socket: join(dir, "none.sock") }),
    );
    assert.equal(out.status, 1);
    const e = JSON.parse(out.stdout) as { code: number; details: string };
    assert.equal(e.code, 11, out.stdout);
    assert.match(e.details, /none\.sock/);
  });

  test("an agent without /v1/cni/invoke: the Node plugin makes the calls itself (same answer as before the shim)", async () => {
    const calls: string[] = [];
    await serve([
      {
        method: "POST",
        path: "/v1/cni/attachments",
        status: 201,
        handler: (req) => {
          calls.push(req.path);
          return {};
        },
      },
    ]);
    try {
      const out = await exec({ ...ENV, CNI_COMMAND: "ADD" }, conf({ prevResult: PREV, socket: sock }));
      assert.equal(out.status, 0, out.stdout);
      assert.deepEqual(JSON.parse(out.stdout), { ...PREV, cniVersion: "1.1.0" });
      assert.deepEqual(calls, ["/v1/cni/attachments"]);
    } finally {
      await invoke();
    }
  });

  test("an agent that takes the request and dies, never answers (timeoutSeconds 1), or claims a huge answer: 11, never sent twice", async () => {
    for (const mode of ["close", "silent", "huge"] as const) {
      const path = join(dir, `${mode}.sock`);
      let connections = 0;
      const held: import("node:net").Socket[] = [];
      const srv: Server = createServer((s) => {
        connections++;
        held.push(s);
        s.once("data", () => {
          if (mode === "close")
            s.end("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nMembrane-Cni-Exit: 0\r\n\r\n{");
          // A length whose sum with the header's overflows: before, the shim wrote memory past its buffer.
          if (mode === "huge")
            s.end(
              "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551000\r\nMembrane-Cni-Exit: 0\r\n\r\n{}",
            );
        });
      });
      await new Promise<void>((r) => srv.listen(path, r));
      try {
        const out = await exec(
          { ...ENV, CNI_COMMAND: "ADD" },
          conf({ prevResult: PREV, socket: path, timeoutSeconds: 1 }),
        );
        assert.equal(out.status, 1, mode);
        const e = JSON.parse(out.stdout) as { code: number; details: string; cniVersion: string };
        assert.deepEqual([e.code, e.cniVersion], [11, "1.1.0"], out.stdout);
        assert.match(
          e.details,
          {
            close: /closed in the middle/,
            silent: /no answer within/,
            huge: /Content-Length is not 0\.\.16 MiB/,
          }[mode],
        );
        assert.equal(connections, 1);
      } finally {
        for (const s of held) s.destroy();
        await new Promise<void>((r) => srv.close(() => r()));
      }
    }
  });
  test("POST /v1/cni/invoke refuses a malformed body with 400 naming the field, and runs nothing", async () => {
    const a = agent();
    inner = a.call;
    const post = (body: string): Promise<{ status: number; text: string; exit: unknown }> =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            socketPath: sock,
            method: "POST",
            path: "/v1/cni/invoke",
            headers: { "Content-Type": "application/json" },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                text: Buffer.concat(chunks).toString("utf8"),
                exit: res.headers["membrane-cni-exit"],
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    const cases: [string, RegExp][] = [
      [
        JSON.stringify({ env: { CNI_COMMAND: "ADD", LD_PRELOAD: "/x" }, stdin: "" }),
        /field "env\.LD_PRELOAD" is not one of/,
      ],
      [JSON.stringify({ env: { CNI_COMMAND: 1 }, stdin: "" }), /field "env\.CNI_COMMAND" must be a string/],
      [
        JSON.stringify({ env: {}, stdin: " ".repeat((1 << 20) + 1) }),
        /field "stdin" must be at most 1048576/,
      ],
      [JSON.stringify({ env: {}, stdin: "", extra: 1 }), /field "extra" is not a field/],
    ];
    for (const [body, msg] of cases) {
      const r = await post(body);
      assert.equal(r.status, 400, r.text);
      assert.match((JSON.parse(r.text) as { error: { message: string } }).error.message, msg);
      assert.equal(
        r.exit,
        undefined,
        "no Membrane-Cni-Exit: the shim would hand the call to the Node plugin",
      );
    }
    assert.equal(a.calls.length, 0);
  });
});
