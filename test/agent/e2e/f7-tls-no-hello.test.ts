/**
 * f7 (issue 10 item 5 b): on a `serverNames` port, a connection that never
 * sends a TLS ClientHello is refused in the kernel path (agent, nftables
 * redirect, the node's proxy), as offline: plain bytes are reset and never
 * reach the server; a client that connects, stays silent and closes leaves
 * nothing upstream either. Needs root.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

const SNI_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: app-sni, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
    - toEndpoints: [{matchLabels: {app: srv}}]
      toPorts:
        - ports: [{port: "443", protocol: TCP}]
          serverNames: [srv.example.com]
`;

describe(
  "f7 serverNames port without a ClientHello (root: agent, kernel redirect, proxy)",
  {
    skip: skip ?? false,
  },
  () => {
    let lab: AgentLab;
    before(async () => {
      lab = await AgentLab.start("f7sn", { proxy: true });
      await lab.endpoint("srv", { app: "srv" }, { tcp: [443] });
      await lab.endpoint("app", { app: "app" });
    });
    after(async () => {
      await lab?.destroy();
    });

    test("plain bytes are reset by the proxy and a silent client that closes reaches nothing; the server sees no connection", async () => {
      const srv = lab.ep("srv");
      const app = lab.ep("app").probe;
      // Control, before any policy: the same plain bytes reach the echo server and are counted.
      assert.equal(await app.tcp(srv.ip, 443, T), "ok");
      assert.equal(await srv.probe.count("tcp", 443), 1);

      await lab.agent.applyPolicies(SNI_EGRESS, "sni.yaml");
      // Connect, send nothing, close: the proxy accepted the connection (redirect) and must not go upstream.
      assert.equal(await app.connect(srv.ip, 443, T), "ok");
      // Plain bytes instead of a ClientHello: reset at once, nothing upstream.
      assert.equal(await app.tcp(srv.ip, 443, 2000), "reset");
      assert.equal(await app.tcp(srv.ip, 443, 2000), "reset");
      assert.equal(await srv.probe.count("tcp", 443), 1, "no connection reached the server after the policy");
    });
  },
);
