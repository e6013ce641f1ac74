/**
 * A stand-in agent for the connect lifetime test: refuses connects to port
 * 8081 for the endpoint given as JSON in argv[2] (its cgroup), prints
 * "READY", then waits to be killed.
 */
import { LabelSet } from "../../../src/labels/label.js";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { policy } from "./helpers.js";

const ep = JSON.parse(process.argv[2] ?? "{}") as { netnsInode: number; cgroup: string };
const enf = new RuntimeEnforcer({
  sink: { onPolicyEvent: () => undefined },
  connectGuard: process.argv[3] ?? "",
});
await enf.setEndpoints([
  {
    key: "default/client",
    labels: LabelSet.fromMap({ app: "client" }),
    netnsInode: ep.netnsInode,
    cgroup: ep.cgroup,
  },
]);
await enf.apply(
  policy(`apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: hold}
spec:
  podSelector: {matchLabels: {app: client}}
  kprobes:
  - call: tcp_connect
    args: [{index: 0, type: sock}]
    selectors:
    - matchArgs: [{index: 0, operator: DPort, values: [8081]}]
      matchActions: [{action: Override}]
`),
);
process.stdout.write("READY\n");
setInterval(() => undefined, 1 << 30);
