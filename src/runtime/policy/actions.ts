/**
 * `matchActions[]` of a selector: what the enforcer does when the selector
 * matches. Post/NoPost, Sigkill and Signal everywhere (bpftrace); Override
 * only where a denial path exists on this kernel: the file hooks (fanotify
 * permission events, src/runtime/file/) and, with a podSelector, the connect
 * hooks (cgroup connect4/6 programs, src/runtime/enforce/connect-*.ts). Both
 * answer a denial with EPERM, so argError is -1. Everything else Tetragon
 * defines is a named error (POLICY_UNSUPPORTED), never ignored.
 */
import type { Fields, Val } from "../../policy/api/fields.js";
import type { Translation } from "./translation.js";
import type { Action } from "./types.js";
import { MAX_SIGNAL } from "./values.js";

export const MATCH_ACTIONS_FIELDS = [
  "action",
  "argSig",
  "argError",
  "rateLimit",
  "rateLimitScope",
  // Arguments of actions Membrane refuses (UNSUPPORTED_ACTIONS) or options it does not serve:
  "argFqdn",
  "argUrl",
  "argSock",
  "argIndex",
  "argValue",
  "argRegs",
  "argNewAddr",
  "argNewOffset",
  "argNewSymbol",
  "kernelStackTrace",
  "userStackTrace",
  "imaHash",
] as const;
const ACTION_OPTIONS_REFUSED = MATCH_ACTIONS_FIELDS.slice(3);

const FD_ACTIONS: readonly string[] = ["FollowFD", "UnfollowFD", "CopyFD"];

function fdActionGone(a: string): string {
  return `${a} was deprecated by Tetragon in v1.4 and has since been removed from its TracingPolicy (its "fd" argument type resolves the path without an fd-to-path map kept from fd_install to close): match the file by its path where it is opened instead, with a kprobe on security_file_permission, security_file_open or fd_install (matchArgs Equal/Prefix/Postfix on the path) and Sigkill, or Override to deny the access (src/runtime/policy/translation.ts)`;
}

/** Tetragon actions refused here, with the reason. */
const UNSUPPORTED_ACTIONS: Record<string, string> = {
  // Tetragon deprecated these three in v1.4 and has removed them since (its `fd` argument type
  // resolves the path on its own). Accepted here, they would be dead actions: refused, with the way.
  FollowFD: fdActionGone("FollowFD"),
  UnfollowFD: fdActionGone("UnfollowFD"),
  CopyFD: fdActionGone("CopyFD"),
  GetUrl: "GetUrl is not supported (Membrane makes no requests on a policy's behalf)",
  DnsLookup: "DnsLookup is not supported (Membrane makes no requests on a policy's behalf)",
  TrackSock: "TrackSock is not supported",
  UntrackSock: "UntrackSock is not supported",
  NotifyEnforcer:
    "NotifyEnforcer needs Tetragon's enforcer programs (kprobes); use Sigkill or Signal in the selector",
  CleanupEnforcerNotification: "CleanupEnforcerNotification needs Tetragon's enforcer programs",
  Set: "Set is not supported",
};

export function readAction(v: Val, tr: Translation): Action | undefined {
  // A removed fd action comes with its removed arguments (argFd, argName): the action is what to explain.
  const early = v.peek("action");
  const name = early?.kind === "string" ? early.str() : undefined;
  if (name !== undefined && FD_ACTIONS.includes(name)) return early?.unsupported(fdActionGone(name));
  const f = v.map(MATCH_ACTIONS_FIELDS);
  if (!f) return undefined;
  const aVal = f.need("action");
  const a = aVal?.str();
  if (a === undefined || !aVal) return undefined;
  if (Object.hasOwn(UNSUPPORTED_ACTIONS, a)) return aVal.unsupported(UNSUPPORTED_ACTIONS[a] ?? "");
  for (const n of ACTION_OPTIONS_REFUSED)
    if (f.has(n)) f.get(n)?.unsupported(`${n} is not supported by Membrane's enforcer`);
  if (a === "Override") return readOverride(f, aVal, tr);
  // argError goes with Override (refused above); elsewhere Tetragon ignores it, and so do we, aloud.
  if (f.has("argError")) f.get("argError")?.warn(`argError has no effect with action ${a}`);
  if (a === "Post" || a === "NoPost" || a === "Sigkill") {
    if (f.has("argSig")) f.get("argSig")?.error(`argSig belongs to action Signal, not ${a}`);
    return { action: a };
  }
  if (a === "Signal") {
    const sig = f.need("argSig")?.int(1, MAX_SIGNAL);
    return sig === undefined ? undefined : { action: "Signal", signal: sig };
  }
  return aVal.error(`unknown action ${JSON.stringify(a)} (Post, NoPost, Sigkill, Signal, Override)`);
}

/** Override: the file hooks (fanotify) and the connect hooks (cgroup programs); EPERM only (argError -1). */
function readOverride(f: Fields, aVal: Val, tr: Translation): Action | undefined {
  if (!tr.fanotify && !tr.connect)
    return aVal.unsupported(
      `Override on ${tr.functionName} needs bpf_override_return or fmod_ret, which this kernel refuses (lockdown); Override is served for the file hooks security_file_permission, security_file_open and fd_install (fanotify) and, with a podSelector, for the connect hooks tcp_connect and security_socket_connect (cgroup connect programs); use Sigkill to stop the process instead`,
    );
  if (f.has("argSig")) f.get("argSig")?.error("argSig belongs to action Signal, not Override");
  // A connect hook's Override defaults to EPERM; a file hook's names it, as Tetragon's examples do.
  const errVal = tr.connect ? f.get("argError") : f.need("argError");
  if (!tr.connect && !errVal) return undefined;
  const err = errVal === undefined ? -1 : errVal.int(-4095, 4095);
  if (err === undefined) return undefined;
  if (err !== -1)
    return errVal?.unsupported(
      tr.connect
        ? `argError ${err} cannot be given by a cgroup connect program here: a refused connect() fails with EPERM (argError -1)`
        : `a denied file access returns EPERM (fanotify FAN_DENY): argError must be -1, not ${err}`,
    );
  return { action: "Override", argError: -1 };
}
