/**
 * The spec cases both membrane-cni binaries must answer alike: the Node
 * plugin's run() (spec.test.ts) and the native shim through a real agent
 * socket (shim.test.ts). Each names the input, the code and the details.
 */
import { MembraneError } from "../../src/errors.js";
import type { AgentCall } from "../../src/cni/plugin.js";

export const PREV = {
  cniVersion: "1.0.0",
  interfaces: [
    { name: "veth1234", mac: "aa:bb:cc:dd:ee:ff" },
    { name: "eth0", mac: "aa:bb:cc:dd:ee:00", sandbox: "/run/netns/c1" },
  ],
  ips: [{ address: "10.89.0.5/24", gateway: "10.89.0.1", interface: 1 }],
  routes: [{ dst: "0.0.0.0/0" }],
  dns: {},
};
export const ENV = { CNI_CONTAINERID: "c1abc", CNI_NETNS: "/run/netns/c1", CNI_IFNAME: "eth0", CNI_ARGS: "" };
export const conf = (o: Record<string, unknown> = {}): string =>
  JSON.stringify({ cniVersion: "1.1.0", name: "net1", type: "membrane-cni", socket: "/run/x.sock", ...o });

/** An agent that records calls and answers `answer` (or throws it). */
export function agent(answer: unknown = {}): { call: AgentCall; calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    call: (_s, _t, method, path, body) => {
      calls.push([method, path, body]);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
  };
}
export const DOWN = new MembraneError(
  "AGENT_UNREACHABLE",
  "Cannot reach the agent at /run/x.sock: the socket does not exist",
);

export const CASES: {
  name: string;
  env: Record<string, string>;
  stdin: string;
  agent?: unknown;
  code: number;
  details: RegExp;
}[] = [
  {
    name: "run by hand (no CNI_COMMAND): error 4 naming the variable and the examples",
    env: {},
    stdin: "",
    code: 4,
    details: /CNI_COMMAND is not set.*examples\/cni/,
  },
  {
    name: "an unknown command: 4",
    env: { ...ENV, CNI_COMMAND: "FROB" },
    stdin: conf(),
    code: 4,
    details: /"FROB"/,
  },
  {
    name: "ADD without a container id: 4 naming CNI_CONTAINERID",
    env: { ...ENV, CNI_COMMAND: "ADD", CNI_CONTAINERID: "" },
    stdin: conf({ prevResult: PREV }),
    code: 4,
    details: /CNI_CONTAINERID/,
  },
  {
    name: "ADD with a relative netns: 4 naming CNI_NETNS",
    env: { ...ENV, CNI_COMMAND: "ADD", CNI_NETNS: "c1" },
    stdin: conf({ prevResult: PREV }),
    code: 4,
    details: /CNI_NETNS/,
  },
  {
    name: "a CNI_ARGS pair without '=': 4",
    env: { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME" },
    stdin: conf({ prevResult: PREV }),
    code: 4,
    details: /CNI_ARGS/,
  },
  {
    name: "stdin that is not JSON: 6",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: "{nope",
    code: 6,
    details: /JSON/,
  },
  {
    name: "an unknown cniVersion: 1",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ cniVersion: "0.3.1" }),
    code: 1,
    details: /"0\.3\.1" is not supported/,
  },
  {
    name: "an unknown field: 2 with its key and value",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ sockett: "/x" }),
    code: 2,
    details: /"sockett" = "\/x"/,
  },
  {
    name: "a relative socket path: 7 naming the field",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ socket: "agent.sock" }),
    code: 7,
    details: /field "socket"/,
  },
  {
    name: "CHECK without prevResult: 7",
    env: { ...ENV, CNI_COMMAND: "CHECK" },
    stdin: conf(),
    code: 7,
    details: /the ADD's result to CHECK/,
  },
  {
    name: "standalone ADD to an agent that answers no cniResult: 100",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf(),
    code: 100,
    details: /no cniResult/,
  },
  {
    name: "a prevResult whose ip indexes no interface: 7 naming the field",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ prevResult: { ...PREV, ips: [{ address: "10.89.0.5/24", interface: 7 }] } }),
    code: 7,
    details: /prevResult\.ips\[0\]\.interface/,
  },
  {
    name: "a prevResult without the container's interface: 7",
    env: { ...ENV, CNI_COMMAND: "ADD", CNI_IFNAME: "net1" },
    stdin: conf({ prevResult: PREV }),
    code: 7,
    details: /no interface "net1"/,
  },
  {
    name: "ADD while the agent is down: 11, fail closed",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ prevResult: PREV }),
    agent: DOWN,
    code: 11,
    details: /Cannot reach the agent/,
  },
  {
    name: "DEL while the agent is down: 11 (the runtime retries; no stale identity left on a reusable address)",
    env: { ...ENV, CNI_COMMAND: "DEL" },
    stdin: conf({ prevResult: PREV }),
    agent: DOWN,
    code: 11,
    details: /Cannot reach the agent/,
  },
  {
    name: "STATUS while the agent is down: 50",
    env: { CNI_COMMAND: "STATUS" },
    stdin: conf(),
    agent: DOWN,
    code: 50,
    details: /does not answer/,
  },
  {
    name: "the agent refuses the ADD: 100 with the agent's message",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: conf({ prevResult: PREV }),
    agent: new MembraneError(
      "ENDPOINT_INVALID",
      "Cannot adopt attachment c1abc/eth0: endpoint default/c1 exists",
    ),
    code: 100,
    details: /endpoint default\/c1 exists/,
  },
  {
    name: "GC without cni.dev/valid-attachments: 7 (nothing is collected)",
    env: { CNI_COMMAND: "GC", CNI_PATH: "/usr/lib/cni" },
    stdin: conf({ cniVersion: "1.1.0" }),
    code: 7,
    details: /valid-attachments/,
  },
  {
    name: "stdin over 1 MiB: 5",
    env: { ...ENV, CNI_COMMAND: "ADD" },
    stdin: " ".repeat((1 << 20) + 1),
    code: 5,
    details: /larger than/,
  },
];
