/**
 * ControllerDeps for controller unit tests: a real PolicyEngine and (where
 * given) a real embedded store; the work queue is the agent's own; `enforce`
 * only counts (the kernel path is covered by the e2e lab, test/agent/e2e).
 */
import { pino } from "pino";
import type { ControllerDeps, EnforceResult } from "../../../src/agent/controller.js";
import { WorkQueue } from "../../../src/agent/work-queue.js";
import { PolicyEngine } from "../../../src/policy/engine.js";
import type { Store } from "../../../src/store/store.js";

export interface TestDeps extends ControllerDeps {
  readonly engineRef: PolicyEngine;
  /** How many enforces ran. */
  enforces: number;
  /** Set to make the next enforces fail. */
  failWith: Error | undefined;
}

export function testDeps(store: Store = undefined as unknown as Store): TestDeps {
  const logger = pino({ level: "silent" });
  const queue = new WorkQueue(logger);
  const engine = new PolicyEngine();
  const d: TestDeps = {
    store,
    logger,
    engineRef: engine,
    engine: () => engine,
    enforces: 0,
    failWith: undefined,
    enforce: (): Promise<EnforceResult> => {
      d.enforces++;
      if (d.failWith) return Promise.reject(d.failWith);
      return Promise.resolve({ ops: 1, ms: 0, endpointsChanged: engine.regenerate().length });
    },
    serial: (f, signal, what) => queue.run(f, signal, what),
  };
  return d;
}
