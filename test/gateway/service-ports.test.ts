/**
 * What a `v1` Service tells the gateway and the L7 load balancer: a port's
 * appProtocol (kept as written, refused when it is not a protocol name) and
 * Cilium's `service.cilium.io/lb-l7` annotation (enabled | disabled).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { parseLbResources } from "../../src/lb/parse.js";

const svc = (ports: string, annotations = "{}"): string => `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: app, annotations: ${annotations}}
spec:
  selector: {app: echo}
  ports: ${ports}
`;

describe("Service appProtocol and lb-l7", () => {
  test("appProtocol kubernetes.io/h2c and grpc are kept per port; lb-l7 enabled is read", () => {
    const s = parseLbResources(
      svc(
        `[{name: a, port: 9090, appProtocol: kubernetes.io/h2c}, {name: b, port: 9091, appProtocol: grpc}, {name: c, port: 80}]`,
        `{service.cilium.io/lb-l7: enabled}`,
      ),
      "s.yaml",
    ).services[0];
    assert.deepEqual(
      s?.ports.map((p) => p.appProtocol),
      ["kubernetes.io/h2c", "grpc", undefined],
    );
    assert.equal(s?.lbL7, true);
  });
  const bad: [string, string, string, RegExp][] = [
    ["an appProtocol with a space", `[{port: 80, appProtocol: "h2 c"}]`, "{}", /spec\.ports\[0\]\.appProtocol: "h2 c" is not a protocol name/],
    ["lb-l7 with another value", `[{port: 80}]`, `{service.cilium.io/lb-l7: "yes"}`, /metadata\.annotations\["service\.cilium\.io\/lb-l7"\]: must be enabled or disabled/],
  ]; // prettier-ignore
  for (const [name, ports, ann, want] of bad)
    test(`refused with the field named: ${name}`, () =>
      assert.throws(
        () => parseLbResources(svc(ports, ann), "s.yaml"),
        (e: unknown) =>
          e instanceof MembraneError &&
          (e.issues ?? []).some((i) => want.test(`${i.path ?? ""}: ${i.message}`)),
      ));
});
