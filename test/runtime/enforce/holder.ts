/**
 * A stand-in agent for the lifetime test: loads SHADOW_KILL for the
 * namespace whose inode is argv[2] with the syscall guard (argv[3] "native", the
 * default) or bpftrace ("bpftrace"), prints "READY", then waits to be killed.
 */
import { LabelSet } from "../../../src/labels/label.js";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { policy, SHADOW_KILL } from "./helpers.js";

const enf = new RuntimeEnforcer({
  sink: { onPolicyEvent: () => undefined },
  syscallGuard: process.argv[3] === "bpftrace" ? "bpftrace" : "native",
});
await enf.setEndpoints([
  { key: "default/victim", labels: LabelSet.fromMap({ app: "victim" }), netnsInode: Number(process.argv[2]) },
]);
await enf.apply(policy(SHADOW_KILL()));
process.stdout.write("READY\n");
setInterval(() => undefined, 1 << 30);
