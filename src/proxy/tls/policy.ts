/**
 * What the TLS proxies ask of a connection's L7 policy (every stage of it):
 * does the SNI pass `serverNames`, and which TLS contexts apply.
 */
import { compileServerNames } from "../../policy/l7/fqdn.js";
import type { L7Spec } from "../../policy/mapstate.js";
import type { TlsContext } from "../../policy/types.js";
import { l7Admits, type L7LookupResult } from "../types.js";

// Compiled serverNames per spec object (specs are immutable): a memo, not state.
const matchers = new WeakMap<L7Spec, (sni: string) => boolean>();

function matcher(spec: L7Spec): (sni: string) => boolean {
  let m = matchers.get(spec);
  if (!m) matchers.set(spec, (m = compileServerNames(spec.serverNames)));
  return m;
}

/**
 * Every stage admits `sni`. A stage with no serverNames admits any SNI (and
 * none) when `emptyAdmitsAll` (TLS interception without serverNames),
 * nothing otherwise (an SNI-only policy with no names is a broken one).
 * Throws if a pattern does not compile: the caller fails closed.
 */
export function sniAdmitted(r: L7LookupResult, sni: string | undefined, emptyAdmitsAll: boolean): boolean {
  return l7Admits(r, (spec) => {
    if (spec.serverNames.length === 0) return emptyAdmitsAll;
    return sni !== undefined && matcher(spec)(sni);
  });
}

export type TlsContextKind = "terminatingTLS" | "originatingTLS";

/**
 * The TLS context of `kind` the stages ask for: undefined when none does,
 * "conflict" when two stages name different ones (fail closed).
 */
export function stageTlsContext(
  r: L7LookupResult,
  kind: TlsContextKind,
): TlsContext | undefined | "conflict" {
  let found: TlsContext | undefined;
  for (let s: L7LookupResult | undefined = r; s; s = s.also) {
    const c = s.spec[kind];
    if (!c) continue;
    if (found && contextKey(found) !== contextKey(c)) return "conflict";
    found ??= c;
  }
  return found;
}

function contextKey(c: TlsContext): string {
  return JSON.stringify([
    c.secret.namespace ?? "default",
    c.secret.name,
    c.trustedCA ?? null,
    c.certificate ?? null,
    c.privateKey ?? null,
  ]);
}
