/**
 * A real ProxySupervisor and proxy process for tests, in a network namespace
 * of the test's own (prefix tag "pxs"): no listeners (no node addresses in
 * the config), so the process only holds tables and answers lookups.
 */
import { spawnSync } from "node:child_process";
import pino, { type Logger } from "pino";
import { ProxySupervisor } from "../../src/proxy/runtime/supervisor.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

export { rootSkipReason };

/** Runs `fn` with a started supervisor; the process and the namespace are gone afterwards. */
export async function withSupervisor(
  fn: (sup: ProxySupervisor) => Promise<void>,
  logger: Logger = pino({ level: "silent" }),
): Promise<void> {
  const netns = uniquePrefix("pxs");
  const add = spawnSync("ip", ["netns", "add", netns], { encoding: "utf8" });
  if (add.status !== 0) throw new Error(`ip netns add ${netns}: ${add.stderr}`);
  const sup = new ProxySupervisor({
    netns,
    gid: 0,
    config: { l7Port: 15001, dnsPort: 15053 },
    logger,
    onL7: () => undefined,
    onDnsAnswer: () => Promise.resolve(),
  });
  try {
    await sup.start();
    await fn(sup);
  } finally {
    await sup.stop();
    spawnSync("ip", ["netns", "del", netns]);
  }
}

/** The shared wait (a named safety net, never a measure). */
export { until } from "../support/until.js";
