/**
 * The gateway process: started by the agent (gateway-runner.ts) inside the
 * namespace that holds the gateway address, it serves the programmed
 * listeners and connects to backends from that address (the reserved
 * `ingress` identity).
 *
 *   agent --IPC config (resources, services, labels, addresses)--> compileGateways --> GatewayServer.update
 *   requests --> GatewayEvent --one IPC message per loop turn (event-batch.ts)--> agent (flows)
 */
import { GatewayCertificates } from "./certs.js";
import { batchEvents } from "./event-batch.js";
import { compileGateways } from "./compile.js";
import { worldOf } from "./world.js";
import type { FromGateway, GatewayInputs, GatewayProcessConfig, ToGateway } from "./protocol.js";
import { GatewayServer } from "./server.js";
import { sourcesOf } from "./source.js";

function send(m: FromGateway): void {
  if (process.send && process.connected) process.send(m);
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as GatewayProcessConfig;
  const certs = new GatewayCertificates(cfg.secretsDir);
  let inputs: GatewayInputs = { resources: [], services: {}, namespaceLabels: {}, addresses: [] };
  const server = new GatewayServer({
    endpoints: (ns, name) => inputs.services[`${ns}/${name}`] ?? [],
    keyPair: (ns, name) => certs.keyPair(ns, name),
    onEvent: batchEvents((events) => send({ type: "events", events })),
    ...sourcesOf(cfg),
  });
  let chain = Promise.resolve();
  process.on("message", (m: ToGateway) => {
    if (m.type !== "config") return;
    chain = chain.then(async () => {
      if (m.inputs.policyRevision !== inputs.policyRevision) server.dropIdle();
      inputs = m.inputs;
      try {
        await server.update(compileGateways(worldOf(m.inputs, certs, new Date().toISOString())).table);
        send({ type: "applied", version: m.version, serving: server.serving });
      } catch (e) {
        send({
          type: "applied",
          version: m.version,
          serving: server.serving,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    });
  });
  process.on("disconnect", () => void server.stop().then(() => process.exit(0)));
  process.on("SIGTERM", () => void server.stop().then(() => process.exit(0)));
}

main();
