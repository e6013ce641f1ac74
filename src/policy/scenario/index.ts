/**
 * Policy scenarios: policies + workloads + connection attempts with the
 * verdicts Cilium would give, run offline against the policy engine
 * (`membrane policy test`, `membrane policy trace`).
 *
 *   scenario.yaml --parseScenario--> Scenario --ScenarioSession--> PolicyEngine
 *                                        |  queries (dns answers, peers -> FlowQuery)
 *                                        v
 *                               engine.decide --compare--> QueryResult[] (pass/fail, deciding rules)
 *
 * The loader validates every field and names file, line and field path in
 * its errors; the runner never reads files itself (the CLI does).
 */
export * from "./types.js";
export { parseScenario, type LoadOptions } from "./load.js";
export { parsePeer, PEER_SYNTAX } from "./peer.js";
export {
  ScenarioSession,
  defaultEngineFactory,
  type EngineFactory,
  type EngineLike,
  type QueryWhere,
} from "./session.js";
export {
  runScenario,
  runScenarioText,
  traceQuery,
  compare,
  explainDecision,
  l7Summary,
  toScenarioError,
} from "./run.js";
