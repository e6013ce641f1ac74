/**
 * Section 7 of the scale benchmark (scale.ts): traffic between two new local
 * endpoints of the running agent, no table vs Membrane's table (with the
 * 50,000-entry ipcache), in ABBA rounds (traffic.ts). "none" deletes the table
 * (with it, conntrack leaves the node namespace); "membrane" makes the agent
 * load it again. The agent runs in both, and is idle before every window
 * (settle.ts); the table is checked before and after each window.
 */
import type { RunningAgent } from "../src/agent/run.js";
import { runRaw } from "../src/datapath/exec.js";
import { Probe } from "../src/probe/probe.js";
import { policies } from "./scale-world.js";
import { settle } from "./settle.js";
import { abTraffic, RR_PORT, trafficFigures, type Pin } from "./traffic.js";

export async function tableLoaded(netns: string, table: string): Promise<boolean> {
  const r = await runRaw(["nft", "list", "tables"], { netns });
  return r.status === 0 && r.stdout.includes(`inet ${table}\n`);
}

export interface ScaleTrafficParams {
  readonly agent: RunningAgent["agent"];
  readonly nodeNetns: string;
  readonly table: string;
  readonly rounds: number;
  readonly seconds: number;
  readonly pin: Pin | undefined;
  /** Fields every figure line carries. */
  readonly common: Record<string, unknown>;
  readonly out: (o: Record<string, unknown>) => void;
}

export async function scaleTraffic(p: ScaleTrafficParams): Promise<void> {
  const mk = (name: string) =>
    p.agent.createEndpointRequest({ name, namespace: "default", labels: { app: name } });
  const client = await mk("bench-client");
  const server = await mk("bench-server");
  let variant = 0;
  let enforcing: string[] = [];
  const settledMs: number[] = [];
  let repairs = 0;
  const inCondition = async (cond: string): Promise<boolean> =>
    (await tableLoaded(p.nodeNetns, p.table)) === (cond === "membrane");
  const setCondition = async (cond: string): Promise<void> => {
    if (cond === "none" && (await tableLoaded(p.nodeNetns, p.table))) await p.agent.reconciler.deleteTable();
    // Any change makes the agent enforce, and with no table it loads the whole table. The variants
    // alternate (scale-world.ts): the first may equal what the sections before applied last
    // (unchanged: nothing enforced), so a second one follows if the table is still missing.
    for (let i = 0; cond === "membrane" && i < 2 && !(await tableLoaded(p.nodeNetns, p.table)); i++)
      await p.agent.applyPolicies(policies(++variant), "bench.yaml");
    if (!(await inCondition(cond))) throw new Error(`the table is not as condition "${cond}" needs`);
    if (cond === "membrane" && enforcing.length === 0) {
      // The table is on the path: the server's allowed port answers, another port is dropped.
      const probe = Probe.start(client.netns);
      enforcing = [
        await probe.tcp(server.ipv4, RR_PORT, 1000),
        await probe.tcp(server.ipv4, RR_PORT + 1, 1000),
      ];
      probe.stop();
    }
  };
  const ab = await abTraffic({
    client,
    server: { netns: server.netns, ip: server.ipv4 },
    rounds: p.rounds,
    seconds: p.seconds,
    pin: p.pin,
    conditions: ["none", "membrane"],
    setCondition,
    // The agent idles at 30-60 ms of CPU per window (its flow reader, timers). Deleting the table
    // for "none" drops the agent's model of it (~225 MB at 250 endpoints); V8's memory reducer
    // then collects it while the process is idle, i.e. during a "none" window: 1.2-1.7 s of CPU
    // (`--trace-gc`: "Mark-Compact (reduce) 453.7 -> 227.9 MB, 335 ms + 1065 ms in 61 steps"),
    // taken from the traffic. Such a window measured the condition switch, not the datapath: it
    // is taken again (either condition; seen only in "none").
    agentBusyMs: 250,
    // The agent's background work (its verification of the table after the restart above,
    // nft read-backs) is over before each window of either condition. That verification
    // may find the table the bench deleted and repair it (reload it): then set the
    // condition again.
    settle: async (cond) => {
      for (let i = 0; ; i++) {
        settledMs.push(await settle());
        if (await inCondition(cond)) return;
        if (i >= 2) throw new Error(`the agent keeps changing the table in condition "${cond}"`);
        repairs++;
        await setCondition(cond);
      }
    },
    check: async (cond) => {
      if (!(await inCondition(cond))) throw new Error(`the table changed during a "${cond}" window`);
    },
  });
  for (const f of trafficFigures(ab, "none", "membrane", {
    ...p.common,
    seconds: p.seconds,
    rounds: p.rounds,
    settledMs,
    repairs,
  })) {
    p.out({ ...f, enforcingCheck: `allowed port ${enforcing[0]}, other port ${enforcing[1]}` });
  }
}
