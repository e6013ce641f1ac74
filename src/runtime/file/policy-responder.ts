/**
 * The enforcer's entry to file-access denial: a TracingPolicy's Override
 * selectors on file hooks, served by one fanotify responder per policy.
 *
 *   policy + scope --compileResponder (marks planned against this node's files)--> FileResponder
 *   reports --reportToEvent--> RuntimePolicyEvent (process_kprobe, KPROBE_ACTION_OVERRIDE)
 *   the responder's own dropped reports --> onLost (counted as kernel-side losses: the agent never saw them)
 */
import { statSync } from "node:fs";
import type { RuntimePolicyEvent } from "../enforce/events.js";
import type { ScriptGuards, ScriptScope } from "../enforce/script.js";
import type { TracingPolicy } from "../policy/types.js";
import { compileResponder, needsResponder, type FsView } from "./config.js";
import { FileResponder, reportToEvent } from "./responder.js";

export { needsResponder } from "./config.js";

/** The node's files as the agent sees them (the endpoints share its mount namespace). */
export const nodeFs: FsView = {
  kind(path) {
    try {
      const st = statSync(path);
      return st.isDirectory() ? "dir" : "file";
    } catch {
      return undefined;
    }
  },
};

export interface PolicyResponderParams {
  readonly policy: TracingPolicy;
  readonly scope: ScriptScope;
  readonly guards: ScriptGuards;
  readonly what: string;
  readonly binary?: string;
  readonly fs?: FsView;
  onEvent(e: RuntimePolicyEvent): void;
  onLost(n: number): void;
  onExit(why: string): void;
}

/** Starts the policy's responder, or undefined when it has no Override on a file hook. */
export async function startPolicyResponder(p: PolicyResponderParams): Promise<FileResponder | undefined> {
  if (!needsResponder(p.policy)) return undefined;
  const cfg = compileResponder(p.policy, p.scope, p.guards, p.fs ?? nodeFs);
  let lostSeen = 0;
  return FileResponder.start({
    config: cfg.text,
    what: p.what,
    ...(p.binary !== undefined ? { binary: p.binary } : {}),
    onReport: (r) => {
      if (r.lost > lostSeen) {
        p.onLost(r.lost - lostSeen);
        lostSeen = r.lost;
      }
      const e = reportToEvent(r, {
        policyName: p.policy.name,
        policyNamespace: p.policy.namespace,
        rules: cfg.rules,
        now: new Date(),
      });
      if (e) p.onEvent(e);
    },
    onExit: p.onExit,
  });
}
