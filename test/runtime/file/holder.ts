/**
 * A stand-in agent for the lifetime test: denies reads of argv[3] to the
 * namespace whose inode is argv[2] (a fanotify responder), prints "READY",
 * then waits to be killed.
 */
import { LabelSet } from "../../../src/labels/label.js";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { policy } from "../enforce/helpers.js";
import { DENY_FILE } from "./helpers.js";

const enf = new RuntimeEnforcer({ sink: { onPolicyEvent: () => undefined } });
await enf.setEndpoints([
  { key: "default/victim", labels: LabelSet.fromMap({ app: "victim" }), netnsInode: Number(process.argv[2]) },
]);
await enf.apply(policy(DENY_FILE("security_file_permission", "Equal", [String(process.argv[3])])));
process.stdout.write("READY\n");
setInterval(() => undefined, 1 << 30);
