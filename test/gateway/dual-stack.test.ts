/**
 * Which addresses a Gateway is served on (dual-stack.ts) and which source
 * address a backend connection leaves from (source.ts), without the network.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileGateways } from "../../src/gateway/compile.js";
import { servedAddresses } from "../../src/gateway/dual-stack.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import { sourceFor } from "../../src/gateway/source.js";
import { CLASS, gatewayYaml } from "./fixtures.js";

const NODE = ["10.0.0.9", "fd00::9"];
const asks = (...addresses: string[]): { addresses: { value: string }[] } => ({
  addresses: addresses.map((value) => ({ value })),
});

describe("gateway dual stack", () => {
  test("a Gateway without spec.addresses: both families, IPv4 first; one on a single-stack node", () => {
    assert.deepEqual(servedAddresses({ gateway: asks(), address: "10.0.0.9" }, NODE), NODE);
    assert.deepEqual(servedAddresses({ gateway: asks(), address: "10.0.0.9" }, ["10.0.0.9"]), ["10.0.0.9"]);
  });

  test("a Gateway naming an address: that one alone; none usable: none", () => {
    assert.deepEqual(servedAddresses({ gateway: asks("fd00::9"), address: "fd00::9" }, NODE), ["fd00::9"]);
    assert.deepEqual(servedAddresses({ gateway: asks("10.0.0.9"), address: "10.0.0.9" }, NODE), ["10.0.0.9"]);
    assert.deepEqual(servedAddresses({ gateway: asks("10.9.9.9"), address: undefined }, NODE), []);
  });

  test("compiled: a default Gateway on both; an older one's IPv6 port yields to a Gateway naming that address", () => {
    const gw = (name: string, created: string, protocol: string, addr?: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: infra, creationTimestamp: "${created}"}
spec:
  gatewayClassName: membrane
  ${addr ? `addresses: [{type: IPAddress, value: "${addr}"}]` : ""}
  listeners: [{name: l, port: 443, protocol: ${protocol}${protocol === "HTTPS" ? ", tls: {certificateRefs: [{name: c}]}" : ""}}]
`;
    const text = `${CLASS}${gw("plain", "2026-01-01T00:00:00Z", "HTTP")}${gw("tls", "2026-01-02T00:00:00Z", "HTTPS", "fd00::9")}`;
    const c = compileGateways({
      resources: parseGatewayResources(text, "test.yaml"),
      hasService: () => true,
      namespaceLabels: () => ({}),
      certificateProblem: () => undefined,
      addresses: NODE,
      now: "2026-01-01T00:00:00Z",
    });
    const ports = c.table.ports.map((p) => `${p.address} ${p.port} ${p.protocol}`).sort();
    assert.deepEqual(ports, ["10.0.0.9 443 HTTP", "fd00::9 443 HTTPS"]);
    const v6 = c.table.ports.find((p) => p.address === "fd00::9");
    assert.deepEqual(
      v6?.listeners.map((l) => l.id),
      ["infra/tls/l"],
    );
    const addresses = (name: string): string[] | undefined =>
      c.status.gateways.get(`Gateway/infra/${name}`)?.addresses.map((a) => a.value);
    assert.deepEqual(addresses("plain"), NODE);
    assert.deepEqual(addresses("tls"), ["fd00::9"]);
    // The port given up on the IPv6 address is said on the listener, not silently dropped.
    const listener = (name: string) =>
      c.status.gateways.get(`Gateway/infra/${name}`)?.listeners[0]?.conditions;
    const conflicted = listener("plain")?.find((x) => x.type === "Conflicted");
    assert.equal(`${conflicted?.status}/${conflicted?.reason}`, "True/ProtocolConflict");
    assert.match(conflicted?.message ?? "", /443 on fd00::9 .*infra\/tls\/l.*served on 10\.0\.0\.9 alone/);
    const programmed = listener("plain")?.find((x) => x.type === "Programmed");
    assert.equal(`${programmed?.status}/${programmed?.reason}`, "True/Programmed");
    assert.equal(listener("tls")?.find((x) => x.type === "Conflicted")?.status, "False");
  });

  test("Gateways given addresses of their own (the LoadBalancer pool): each served on its own; a full pool: AddressNotAssigned", () => {
    const gw = (name: string): string => gatewayYaml(name, ["{name: http, port: 80, protocol: HTTP}"]);
    const text = `${CLASS}${gw("a")}${gw("b")}${gw("full")}${gw("shared")}`;
    const c = compileGateways({
      resources: parseGatewayResources(text, "test.yaml"),
      hasService: () => true,
      namespaceLabels: () => ({}),
      certificateProblem: () => undefined,
      addresses: NODE,
      gatewayAddresses: {
        "infra/a": ["198.18.0.2", "2001:db8:5::2"],
        "infra/b": ["198.18.0.3"],
        "infra/full": [],
      },
      now: "2026-01-01T00:00:00Z",
    });
    const ports = c.table.ports.map(
      (p) => `${p.address} ${p.port} ${p.listeners.map((l) => l.id).join(",")}`,
    );
    assert.deepEqual(ports.sort(), [
      "10.0.0.9 80 infra/shared/http",
      "198.18.0.2 80 infra/a/http",
      "198.18.0.3 80 infra/b/http",
      "2001:db8:5::2 80 infra/a/http",
      "fd00::9 80 infra/shared/http",
    ]);
    const st = (name: string) => c.status.gateways.get(`Gateway/infra/${name}`);
    assert.deepEqual(
      st("a")?.addresses.map((a) => a.value),
      ["198.18.0.2", "2001:db8:5::2"],
    );
    assert.deepEqual(
      st("b")?.addresses.map((a) => a.value),
      ["198.18.0.3"],
    );
    assert.deepEqual(
      st("shared")?.addresses.map((a) => a.value),
      NODE,
    );
    assert.deepEqual(st("full")?.addresses, []);
    const programmed = st("full")?.conditions.find((x) => x.type === "Programmed");
    assert.equal(`${programmed?.status}/${programmed?.reason}`, "False/AddressNotAssigned");
    assert.match(programmed?.message ?? "", /--lb-pool/);
  });

  test("source per family; a family without its own address gets the other's (the connect fails: closed)", () => {
    const both = { localAddress: "10.0.0.9", localAddress6: "fd00::9" };
    assert.deepEqual(sourceFor("fd00::5", both), { localAddress: "fd00::9" });
    assert.deepEqual(sourceFor("10.0.0.5", both), { localAddress: "10.0.0.9" });
    assert.deepEqual(sourceFor("fd00::5", { localAddress: "10.0.0.9" }), { localAddress: "10.0.0.9" });
    assert.deepEqual(sourceFor("10.0.0.5", { localAddress6: "fd00::9" }), { localAddress: "fd00::9" });
    assert.deepEqual(sourceFor("fd00::5", {}), {});
  });
});
