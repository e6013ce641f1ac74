/**
 * An agent started in the test's own process with flows on (NFLOG group 7, a
 * ring of 1,024), its state and socket in a fresh temp dir, its namespaces
 * under `prefix`: what the flow, impact and service-map tests run against.
 * stop() tears everything down (agent, namespaces, temp dir), also after a failure.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAgent, type RunningAgent } from "../../src/agent/run.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import type { MetricHandlerSpec } from "../../src/observe/metrics-config.js";

export interface FlowAgent {
  readonly running: RunningAgent;
  readonly dir: string;
  readonly socketPath: string;
  stop(): Promise<void>;
}

export async function startFlowAgent(
  prefix: string,
  podCidr4: string,
  extra: { metricsAddress?: string; hubbleMetrics?: readonly MetricHandlerSpec[] } = {},
): Promise<FlowAgent> {
  const dir = await mkdtemp(join(tmpdir(), `membrane-${prefix}-`));
  const socketPath = join(dir, "agent.sock");
  const stop = async (running?: RunningAgent): Promise<void> => {
    await running?.stop();
    await cleanupPrefix(prefix);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const running = await startAgent(
      {
        stateDir: join(dir, "state"),
        socketPath,
        nodeNetns: `${prefix}-node`,
        netnsPrefix: `${prefix}-`,
        podCidr4,
        table: "membrane",
        logGroup: 7,
        engine: {},
        logLevel: "error",
        resyncMs: 0,
        observe: {
          nodeName: "node-a",
          ringCapacity: 1024,
          ...(extra.metricsAddress ? { metricsAddress: extra.metricsAddress } : {}),
          ...(extra.hubbleMetrics ? { hubbleMetrics: extra.hubbleMetrics } : {}),
        },
      },
      pino({ level: "error" }),
    );
    return { running, dir, socketPath, stop: () => stop(running) };
  } catch (e) {
    await stop();
    throw e;
  }
}
