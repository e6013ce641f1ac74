/**
 * Gateway API conformance, replayed (root): HTTPRoute `rules[].timeouts`
 * (HTTPRouteRequestTimeout, HTTPRouteBackendRequestTimeout) through the real
 * gateway process to echo pods that wait when asked (`?delay=`). Only the
 * spec's outcome is asserted (504 past the limit, 200 within it), with a wide
 * margin (a 3 s answer against a 500 ms limit), never a duration. Also: the
 * backend connection a timeout cut is not reused half read, and the field
 * checks at apply (duration format, backendRequest <= request, retry refused).
 * Toward an h2c backend (appProtocol kubernetes.io/h2c) too: 504, the stream
 * reset toward the backend, the backend connection kept for what follows.
 * The cases are written here in our words from the suite's contract.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import { ConformanceLab, INFRA } from "./conformance-lab.js";
import { cond } from "./conformance-check.js";
import { until } from "../support/until.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

function route(name: string, prefix: string, timeouts: string, port = 8080): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]
${timeouts === "" ? "" : `    timeouts: {${timeouts}}\n`}    backendRefs: [{name: infra-backend-v1, port: ${port}}]
`;
}

describe("Gateway API conformance: timeouts (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
    await lab.apply(
      route("request-timeout", "/request-timeout", "request: 500ms") +
        route("backend-request-timeout", "/backend-timeout", "request: 10s, backendRequest: 500ms") +
        route("disabled-timeout", "/disabled-timeout", "request: 0s") +
        route("no-timeout", "/no-timeout", "") +
        // Port 8081: appProtocol kubernetes.io/h2c (HTTP/2 to the backend).
        route("h2c-request-timeout", "/h2c-request-timeout", "request: 500ms", 8081) +
        route("h2c-backend-timeout", "/h2c-backend-timeout", "request: 10s, backendRequest: 500ms", 8081),
    );
  });
  after(async () => {
    await lab?.destroy();
  });

  test("HTTPRouteRequestTimeout and HTTPRouteBackendRequestTimeout: 504 past the limit, 200 within it", async () => {
    for (const r of ["request-timeout", "backend-request-timeout", "disabled-timeout", "no-timeout"])
      assert.equal(
        cond(lab.routeConditions(`${INFRA}/${r}`, "same-namespace"), "Accepted"),
        "True/Accepted",
        r,
      );
    const got = await lab.send([
      { path: "/request-timeout?delay=3s" },
      { path: "/request-timeout" },
      { path: "/backend-timeout?delay=3s" },
      { path: "/backend-timeout" },
      { path: "/disabled-timeout?delay=1s" },
      { path: "/no-timeout?delay=1s" },
    ]);
    assert.deepEqual(
      got.map((r) => [r.status, r.seen?.path]),
      [
        [504, undefined],
        [200, "/request-timeout"],
        [504, undefined],
        [200, "/backend-timeout"],
        [200, "/disabled-timeout?delay=1s"],
        [200, "/no-timeout?delay=1s"],
      ],
    );
  });

  test("the same over HTTP/2 (h2c prior knowledge) to the HTTP/1.1 backend", async () => {
    const got = await lab.send([
      { path: "/request-timeout?delay=3s", h2: true },
      { path: "/request-timeout", h2: true },
      { path: "/backend-timeout?delay=3s", h2: true },
      { path: "/backend-timeout", h2: true },
      { path: "/no-timeout?delay=1s", h2: true },
    ]);
    assert.deepEqual(
      got.map((r) => [r.status, r.seen?.path]),
      [
        [504, undefined],
        [200, "/request-timeout"],
        [504, undefined],
        [200, "/backend-timeout"],
        [200, "/no-timeout?delay=1s"],
      ],
    );
  });

  test("toward an h2c backend, from HTTP/1.1 and HTTP/2 clients: 504 past the limit, the backend's stream reset, its connection kept", async () => {
    const paths = ["/h2c-request-timeout", "/h2c-backend-timeout"];
    const reqs = [false, true].flatMap((h2) =>
      paths.flatMap((p) => [
        { path: `${p}?delay=3s&h2=${h2}`, h2 },
        { path: `${p}?h2=${h2}`, h2 },
      ]),
    );
    const got = await lab.send(reqs);
    assert.deepEqual(
      got.map((r) => [r.status, r.seen?.path]),
      reqs.map((q) => (q.path.includes("delay") ? [504, undefined] : [200, q.path])),
    );
    // Each late request's stream was reset toward the backend (the echo pod saw it end unanswered) ...
    const late = reqs.filter((q) => q.path.includes("delay")).map((q) => q.path);
    await until("the backend saw each late stream reset", () =>
      late.every((p) => lab.echoLog().some((l) => l.includes(` RESET ${p} `))),
    );
    // ... while the gateway's HTTP/2 connection to it stayed: every request, late or not, came on one.
    const conns = new Set(
      lab
        .echoLog()
        .filter((l) => / h2-conn \d+ \/h2c-/.test(l))
        .map((l) => l.split(" ")[2]),
    );
    assert.equal(conns.size, 1, [...conns].join(", "));
    const [after] = await lab.send([{ path: "/h2c-backend-timeout?after=1" }]);
    assert.equal(after?.seen?.path, "/h2c-backend-timeout?after=1");
  });

  test("a backend connection cut by a timeout is not reused: the next request gets its own answer", async () => {
    for (let i = 0; i < 3; i++) {
      const [late] = await lab.send([{ path: `/backend-timeout?delay=3s&i=${i}` }]);
      assert.equal(late?.status, 504);
      // Sent while the cut request's answer is still pending at the echo pod.
      const [next] = await lab.send([{ path: `/backend-timeout?next=${i}` }]);
      assert.equal(next?.status, 200);
      assert.equal(next?.seen?.path, `/backend-timeout?next=${i}`);
    }
  });
});

describe("Gateway API: timeouts and retry fields checked at apply", () => {
  const bad = (rule: string): string => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, port: 8080}]
    ${rule}
`;
  const refused = (rule: string, why: RegExp): void =>
    assert.throws(() => parseGatewayResources(bad(rule), "t.yaml"), why, rule);

  test("durations follow the Gateway API format; backendRequest may not exceed request", () => {
    refused("timeouts: {request: 1.5s}", /spec\.rules\[0\]\.timeouts\.request.*not a duration/);
    refused("timeouts: {request: '500'}", /spec\.rules\[0\]\.timeouts\.request.*not a duration/);
    refused(
      "timeouts: {backendRequest: 123456s}",
      /spec\.rules\[0\]\.timeouts\.backendRequest.*not a duration/,
    );
    refused("timeouts: {request: 1h1m1s1ms1s}", /spec\.rules\[0\]\.timeouts\.request.*not a duration/);
    refused(
      "timeouts: {request: 1s, backendRequest: 2s}",
      /spec\.rules\[0\]\.timeouts\.backendRequest.*must not exceed/,
    );
    refused("timeouts: {request: 1s, idle: 2s}", /spec\.rules\[0\]\.timeouts\.idle.*unknown field/);
    for (const ok of [
      "{request: 1h30m}",
      "{request: 0s, backendRequest: 2s}",
      "{request: 2s, backendRequest: 2000ms}",
    ])
      assert.doesNotThrow(() => parseGatewayResources(bad(`timeouts: ${ok}`), "t.yaml"), ok);
  });

  test("rules[].retry is refused, naming the field", () => {
    refused("retry: {attempts: 2, codes: [500]}", /spec\.rules\[0\]\.retry.*not supported/);
  });
});
