/**
 * A gateway request event as the agent's L7 flow (agent/gateway-start.ts l7Of): the backend's
 * endpoint is found by its address (IPv4 or IPv6) from the endpoints' index, and only that
 * endpoint's view is built (one event per request: not a view of every endpoint).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { l7Of } from "../../src/agent/gateway-start.js";
import type { EndpointView } from "../../src/agent/controllers/endpoint-record.js";
import type { EndpointRecordV1 } from "../../src/agent/records.js";
import type { GatewayEvent } from "../../src/gateway/exchange.js";
import { ID } from "../../src/identity/reserved.js";

const rec = (name: string, ipv4: string, ipv6?: string): EndpointRecordV1 => ({
  v: 1,
  name,
  namespace: "shop",
  labels: {},
  id: 1,
  netns: `g17-${name}`,
  hostIfname: `g17h-${name}`,
  ipv4,
  ...(ipv6 !== undefined ? { ipv6 } : {}),
});

function endpoints(records: EndpointRecordV1[]): {
  recordByIp(ip: string): EndpointRecordV1 | undefined;
  view(r: EndpointRecordV1): EndpointView;
  views: string[];
} {
  const views: string[] = [];
  return {
    views,
    recordByIp: (ip) => records.find((r) => r.ipv4 === ip || r.ipv6 === ip),
    view: (r) => {
      views.push(r.name);
      return { ...r, identity: 40000 + records.indexOf(r) } as unknown as EndpointView;
    },
  };
}

const event = (address?: string): GatewayEvent => ({
  listener: "10.0.0.1:80",
  client: { address: "192.0.2.7", port: 40000 },
  method: "GET",
  url: "svc/api",
  status: 200,
  latencyMs: 0.5,
  ...(address !== undefined ? { backend: { service: "shop/web", address, port: 8080 } } : {}),
});

describe("gateway events as L7 flows", () => {
  const eps = [rec("a", "10.1.0.2"), rec("b", "10.1.0.3", "fd00::3"), rec("c", "10.1.0.4")];

  test("the backend's endpoint by its IPv4 or IPv6 address; only its view is built", () => {
    const e = endpoints(eps);
    const v4 = l7Of(event("10.1.0.3"), e);
    assert.equal(v4.endpoint, "shop/b");
    assert.equal(v4.dstIdentity, 40001);
    const v6 = l7Of(event("fd00::3"), e);
    assert.equal(v6.endpoint, "shop/b");
    assert.equal(v6.dstIdentity, 40001);
    assert.deepEqual(e.views, ["b", "b"]);
    assert.equal(v4.srcIdentity, ID.world);
    assert.equal(v4.url, "http://svc/api");
  });

  test("no endpoint at the address, or no backend: the gateway with the ingress identity", () => {
    const e = endpoints(eps);
    for (const x of [l7Of(event("10.9.9.9"), e), l7Of(event(), e)]) {
      assert.equal(x.endpoint, "gateway");
      assert.equal(x.dstIdentity, ID.ingress);
    }
    assert.deepEqual(e.views, []);
  });
});
