/**
 * Malformed API bodies against a real agent socket (rd): every route that
 * takes a body answers 400 naming the field, never 500, and changes nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAgent, type RunningAgent } from "../../src/agent/run.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

interface Answer {
  status: number;
  body: { error?: { code: string; message: string; location?: { path?: string } } } & Record<string, unknown>;
}

/** Sends `raw` (already JSON text, or anything) as the body. */
export function send(socketPath: string, method: string, path: string, raw?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers:
          raw === undefined
            ? {}
            : { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(raw) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({
            status: res.statusCode ?? 0,
            body: text === "" ? {} : (JSON.parse(text.split("\n")[0] ?? "") as Answer["body"]),
          });
        });
      },
    );
    req.on("error", reject);
    req.end(raw);
  });
}

const EP = "/v1/endpoints/default/web";
/** [name, method, path, body, the field the answer must name ("" = the body itself)] */
const CASES: [string, string, string, string, string][] = [
  ["apply: empty object", "POST", "/v1/policies", "{}", "text"],
  ["apply: text is a number", "POST", "/v1/policies", '{"text": 5, "file": "a.yaml"}', "text"],
  ["apply: file is null", "POST", "/v1/policies", '{"text": "", "file": null}', "file"],
  ["apply: an array", "POST", "/v1/policies", "[]", ""],
  ["apply: null", "POST", "/v1/policies", "null", ""],
  ["apply: a string", "POST", "/v1/policies", '"x"', ""],
  ["apply: extra field", "POST", "/v1/policies", '{"text": "", "file": "a", "force": true}', "force"],
  ["delete policies: empty object", "DELETE", "/v1/policies", "{}", "text"],
  ["delete policies: file is an object", "DELETE", "/v1/policies", '{"text": "", "file": {}}', "file"],
  ["create endpoint: empty object", "POST", "/v1/endpoints", "{}", "name"],
  [
    "create endpoint: name is a number",
    "POST",
    "/v1/endpoints",
    '{"name": 5, "namespace": "default"}',
    "name",
  ],
  [
    "create endpoint: namespace is a list",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": []}',
    "namespace",
  ],
  [
    "create endpoint: labels is a list",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "labels": []}',
    "labels",
  ],
  [
    "create endpoint: a label value is a number",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "labels": {"app": 1}}',
    "labels.app",
  ],
  [
    "create endpoint: ports is a string",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "ports": "80"}',
    "ports",
  ],
  [
    "create endpoint: port entry is null",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "ports": [null]}',
    "ports[0]",
  ],
  [
    "create endpoint: port name is a number",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "ports": [{"name": 1, "port": 80}]}',
    "ports[0].name",
  ],
  [
    "create endpoint: port is a string",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "ports": [{"name": "http", "port": "80"}]}',
    "ports[0].port",
  ],
  [
    "create endpoint: port entry has an extra field",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "ports": [{"name": "http", "port": 80, "host": 1}]}',
    "ports[0].host",
  ],
  [
    "create endpoint: extra field",
    "POST",
    "/v1/endpoints",
    '{"name": "a", "namespace": "default", "color": "red"}',
    "color",
  ],
  ["relabel: empty object", "PATCH", `${EP}/labels`, "{}", "labels"],
  ["relabel: labels is null", "PATCH", `${EP}/labels`, '{"labels": null}', "labels"],
  ["relabel: replace is a string", "PATCH", `${EP}/labels`, '{"labels": {}, "replace": "yes"}', "replace"],
  ["relabel: an array", "PATCH", `${EP}/labels`, "[1]", ""],
  ["namespace labels: empty object", "PUT", "/v1/namespaces/team", "{}", "labels"],
  ["namespace labels: labels is a string", "PUT", "/v1/namespaces/team", '{"labels": "a=b"}', "labels"],
  ["namespace labels: extra field", "PUT", "/v1/namespaces/team", '{"labels": {}, "x": 1}', "x"],
  ["service: empty object", "PUT", "/v1/services/default/db", "{}", "ports"],
  ["service: ports is an object", "PUT", "/v1/services/default/db", '{"ports": {}}', "ports"],
  [
    "service: port is a string",
    "PUT",
    "/v1/services/default/db",
    '{"ports": [{"port": "5432"}]}',
    "ports[0].port",
  ],
  [
    "service: protocol is wrong",
    "PUT",
    "/v1/services/default/db",
    '{"ports": [{"port": 1, "protocol": "ICMP"}]}',
    "ports[0].protocol",
  ],
  [
    "service: selector is a number",
    "PUT",
    "/v1/services/default/db",
    '{"ports": [], "selector": 5}',
    "selector",
  ],
  ["service: an ip is a number", "PUT", "/v1/services/default/db", '{"ports": [], "ips": [5]}', "ips[0]"],
  ["flows: an array", "POST", "/v1/flows", "[]", ""],
  ["flows: number is a string", "POST", "/v1/flows", '{"number": "5"}', "number"],
  ["flows: filter is a list", "POST", "/v1/flows", '{"filter": []}', "filter"],
  ["flows: follow is a string", "POST", "/v1/flows", '{"follow": "yes"}', "follow"],
  ["flows: extra field", "POST", "/v1/flows", '{"limit": 5}', "limit"],
  ["follow: filter is a number", "POST", "/v1/flows/follow", '{"filter": 5}', "filter"],
  ["follow: null", "POST", "/v1/flows/follow", "null", ""],
  ["why: since is negative", "POST", "/v1/why", '{"since": -1}', "since"],
  ["why: a string", "POST", "/v1/why", '"why"', ""],
];

test(
  "rd: malformed API bodies get 400 naming the field, never 500, change nothing, and quote input escaped",
  {
    skip: rootSkipReason(),
    timeout: 120_000,
  },
  async () => {
    const prefix = uniquePrefix("rd");
    const dir = await mkdtemp(join(tmpdir(), "membrane-rd-api-"));
    const socketPath = join(dir, "agent.sock");
    let running: RunningAgent | undefined;
    try {
      running = await startAgent(
        {
          stateDir: join(dir, "state"),
          socketPath,
          nodeNetns: `${prefix}-node`,
          netnsPrefix: `${prefix}-`,
          podCidr4: "10.211.0.0/24",
          table: `m${prefix}`,
          logGroup: 1,
          engine: {},
          logLevel: "silent",
          resyncMs: 0,
          observe: { nodeName: prefix, ringCapacity: 64 },
        },
        pino({ level: "silent" }),
      );
      const before = await Promise.all(
        ["/v1/endpoints", "/v1/policies", "/v1/identities"].map((p) => send(socketPath, "GET", p)),
      );
      const wrong: string[] = [];
      for (const [name, method, path, body, field] of CASES) {
        const a = await send(socketPath, method, path, body);
        const e = a.body.error;
        const names =
          field === "" ? /the body/ : new RegExp(`(^|[" ])${field.replace(/[[\].]/g, "\\$&")}([" ]|$)`);
        if (
          a.status !== 400 ||
          !e ||
          e.code !== "API_REQUEST_INVALID" ||
          !names.test(e.message) ||
          (field !== "" && e.location?.path !== field)
        )
          wrong.push(`${name}: ${method} ${path} ${body} -> ${a.status} ${JSON.stringify(a.body)}`);
      }
      assert.deepEqual(wrong, [], `answers that are not 400 naming the field:\n${wrong.join("\n")}`);
      const after = await Promise.all(
        ["/v1/endpoints", "/v1/policies", "/v1/identities"].map((p) => send(socketPath, "GET", p)),
      );
      assert.deepEqual(after, before, "a rejected request changed the agent's state");
      // Control characters (ESC, NUL, newline) in names, labels and file names come back escaped.
      const evil = "x\u001b[2J\u0000\n";
      const escaped: [string, string, string | undefined][] = [
        ["POST", "/v1/endpoints", JSON.stringify({ name: evil, namespace: "default" })],
        ["POST", "/v1/endpoints", JSON.stringify({ name: "ok", namespace: evil })],
        [
          "POST",
          "/v1/endpoints",
          JSON.stringify({ name: "ok", namespace: "default", labels: { [evil]: "v" } }),
        ],
        [
          "POST",
          "/v1/endpoints",
          JSON.stringify({ name: "ok", namespace: "default", labels: { app: evil } }),
        ],
        ["POST", "/v1/endpoints", JSON.stringify({ name: "ok", namespace: "default", [evil]: 1 })],
        ["POST", "/v1/policies", JSON.stringify({ text: "a: [", file: `${evil}.yaml` })],
        ["POST", "/v1/policies", JSON.stringify({ text: `kind: ${evil}`, file: "p.yaml" })],
        ["GET", `/v1/endpoints/default/${encodeURIComponent(evil)}`, undefined],
        ["PATCH", `/v1/endpoints/${encodeURIComponent(evil)}/web/labels`, '{"labels": {}}'],
      ];
      for (const [method, path, body] of escaped) {
        const a = await send(socketPath, method, path, body);
        assert.ok(a.status >= 400 && a.status < 500, `${method} ${path} ${body}: ${a.status}`);
        const texts = strings(a.body);
        assert.ok(
          texts.some((t) => /\\(x1b|u001b)\[2J/.test(t)),
          `${method} ${path} ${body}: the error does not quote the input escaped: ${JSON.stringify(a.body)}`,
        );
        for (const t of texts)
          assert.doesNotMatch(t, /[\u0000-\u001f\u007f-\u009f]/, `${method} ${path}: ${JSON.stringify(t)}`);
      }
      // A good body still works (the checks are not too strict).
      const ok = await send(
        socketPath,
        "POST",
        "/v1/endpoints",
        '{"name": "web", "namespace": "default", "labels": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}',
      );
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      const relabel = await send(
        socketPath,
        "PATCH",
        `${EP}/labels`,
        '{"labels": {"tier": "front"}, "replace": false}',
      );
      assert.equal(relabel.status, 200, JSON.stringify(relabel.body));
      // The identity list names each endpoint under its (new) identity, and only there.
      const ids = (await send(socketPath, "GET", "/v1/identities")).body as unknown as {
        labels: string[];
        endpoints: string[];
      }[];
      const holding = ids.filter((i) => i.endpoints.length > 0);
      assert.equal(holding.length, 1, JSON.stringify(holding));
      assert.deepEqual(holding[0]?.endpoints, ["default/web"]);
      assert.ok(
        holding[0]?.labels.some((l) => l.endsWith("tier=front")),
        JSON.stringify(holding[0]),
      );
      // An accepted file's warnings come back in the answer (as kubectl shows the API server's).
      const ccnp =
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n" +
        "metadata: {name: cw, namespace: team-a}\nspec: {endpointSelector: {}}\n";
      const warned = await send(
        socketPath,
        "POST",
        "/v1/policies",
        JSON.stringify({ text: ccnp, file: "w.yaml" }),
      );
      assert.equal(warned.status, 200, JSON.stringify(warned.body));
      assert.deepEqual(warned.body.warnings, [
        "warning: w.yaml:3: metadata.namespace: a CiliumClusterwideNetworkPolicy is cluster-wide: " +
          "metadata.namespace is ignored (the Kubernetes API server drops it); remove it",
      ]);
    } finally {
      await running?.stop();
      await cleanupPrefix(prefix);
      await rm(dir, { recursive: true, force: true });
    }
  },
);

/** Every string inside a JSON value. */
function strings(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (typeof v === "object" && v !== null) return Object.values(v).flatMap(strings);
  return [];
}
