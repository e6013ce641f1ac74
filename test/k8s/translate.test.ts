/** Kubernetes objects -> controller inputs (src/k8s/translate.ts): table-driven, pure. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePolicies } from "../../src/policy/api/index.js";
import { WATCHED } from "../../src/k8s/resources.js";
import { podEndpointName } from "../../src/labels/pod-name.js";
import { nodeAddresses, podInfo, policyDocument, serviceSpec, sliceInfo } from "../../src/k8s/translate.js";

describe("Kubernetes translation", () => {
  test("a pod: labels without rollout hashes, canonical addresses, node, service account", () => {
    const p = podInfo({
      metadata: {
        name: "web-7f9c-abcde",
        namespace: "prod",
        labels: { app: "web", "pod-template-hash": "7f9c" },
      },
      spec: { nodeName: "n2", serviceAccountName: "web" },
      status: { phase: "Running", podIP: "10.1.0.7", podIPs: [{ ip: "10.1.0.7" }, { ip: "fd00:0::7" }] },
    });
    assert.deepEqual(p, {
      name: "web-7f9c-abcde",
      namespace: "prod",
      labels: { app: "web" },
      ips: ["10.1.0.7", "fd00::7"],
      nodeName: "n2",
      hostNetwork: false,
      terminated: false,
      serviceAccount: "web",
    });
  });

  const refused: { name: string; f: () => unknown; want: RegExp }[] = [
    { name: "a pod without a name", f: () => podInfo({ metadata: {} }), want: /metadata\.name is missing/ },
    {
      name: "a pod address that is not one",
      f: () => podInfo({ metadata: { name: "p", namespace: "d" }, status: { podIPs: [{ ip: "10.1" }] } }),
      want: /Pod d\/p: status\.podIPs\[0\]\.ip "10\.1" is not an IP address/,
    },
    {
      name: "a label value that is not a string",
      f: () => podInfo({ metadata: { name: "p", namespace: "d", labels: { a: 1 } } }),
      want: /metadata\.labels\.a is not a string/,
    },
    {
      name: "a service port of another protocol",
      f: () =>
        serviceSpec(
          { metadata: { name: "s", namespace: "d" }, spec: { ports: [{ port: 80, protocol: "ICMP" }] } },
          [],
        ),
      want: /spec\.ports\[0\]\.protocol "ICMP" is not TCP, UDP or SCTP/,
    },
  ];
  for (const c of refused) test(`refused, naming the field: ${c.name}`, () => assert.throws(c.f, c.want));

  test("a node's InternalIP and ExternalIP, not its Hostname", () => {
    assert.deepEqual(
      nodeAddresses({
        metadata: { name: "n2" },
        status: {
          addresses: [
            { type: "InternalIP", address: "192.168.1.2" },
            { type: "Hostname", address: "n2" },
            { type: "ExternalIP", address: "2001:db8::2" },
          ],
        },
      }),
      { name: "n2", ips: ["192.168.1.2", "2001:db8::2"] },
    );
  });

  test("a selector-less service takes the ready addresses of its slices; a selector service its selector", () => {
    const slice = sliceInfo({
      metadata: { name: "db-x1", namespace: "d", labels: { "kubernetes.io/service-name": "db" } },
      endpoints: [
        { addresses: ["10.9.0.1"], conditions: { ready: true } },
        { addresses: ["10.9.0.2"], conditions: { ready: false } },
        { addresses: ["10.9.0.3"] },
      ],
    });
    assert.deepEqual(slice, { name: "db-x1", namespace: "d", service: "db", ips: ["10.9.0.1", "10.9.0.3"] });
    assert.deepEqual(
      serviceSpec({ metadata: { name: "db", namespace: "d" }, spec: { ports: [{ port: 5432 }] } }, [slice]),
      {
        name: "db",
        namespace: "d",
        ports: [{ port: 5432, protocol: "TCP" }],
        ips: ["10.9.0.1", "10.9.0.3"],
      },
    );
    assert.deepEqual(
      serviceSpec(
        {
          metadata: { name: "web", namespace: "d", labels: { tier: "f" } },
          spec: { selector: { app: "web" }, ports: [] },
        },
        [],
      ),
      { name: "web", namespace: "d", ports: [], labels: { tier: "f" }, selector: { app: "web" } },
    );
    assert.equal(
      serviceSpec({ metadata: { name: "x", namespace: "d" }, spec: { type: "ExternalName" } }, []),
      undefined,
    );
  });

  test("pod names become the endpoint names membrane-cni gives them", () => {
    assert.equal(podEndpointName("web.v2-0"), "web-v2-0");
    assert.equal(podEndpointName("a".repeat(70)), "a".repeat(63));
  });

  test("a list item (no apiVersion/kind, server fields) is read by parsePolicies as the resource's kind", () => {
    const knp = WATCHED.find((r) => r.kind === "NetworkPolicy")!;
    const res = parsePolicies(
      policyDocument(knp, {
        metadata: { name: "p", namespace: "d", uid: "u", resourceVersion: "7", managedFields: [] },
        spec: { podSelector: {} },
        status: {},
      }),
      "k8s",
    );
    assert.deepEqual(res[0]?.ref, { kind: "NetworkPolicy", namespace: "d", name: "p" });
  });
});
