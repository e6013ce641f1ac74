/**
 * The request as the HTTP rules see it, read from the same parsed head that
 * `serializeRequest` writes upstream.
 *
 *   RequestHead.headers (as forwarded) --judgedRequest--> HttpRequestLike --> HttpMatcher
 *                                      --serializeRequest--> upstream bytes
 *
 * Header mismatch actions (`headerMatches[].mismatch`) change the request:
 * `judgeHead` applies each stage's actions to the field list itself, so the
 * next stage judges, and `serializeRequest` forwards, the changed list; the
 * judged view of the forwarded head is still read from that one list.
 */
import { actionText, type HeaderAction, type HttpRequestLike } from "../../policy/l7/http.js";
import type { L7Spec } from "../../policy/mapstate.js";
import type { L7LookupResult } from "../types.js";
import type { HeaderField, RequestHead } from "./request.js";
import { judgeStages, type StagesVerdict } from "./stages.js";

/** Method, normalised path, Host and every forwarded field (repeated ones joined with ", ", RFC 9110 §5.3). */
export function judgedRequest(head: RequestHead, path: string): HttpRequestLike {
  return new JudgedView(head, path);
}

/**
 * The judged view; its header record is built when first read: rules on method and path alone
 * never read it (policy/l7/http.ts). A class, so that the common request costs one small object.
 */
class JudgedView implements HttpRequestLike {
  readonly method: string;
  readonly host?: string;
  private joined: Record<string, string> | undefined;
  private readonly fields: RequestHead["headers"];

  constructor(
    head: RequestHead,
    readonly path: string,
  ) {
    this.method = head.method;
    this.fields = head.headers;
    if (head.host !== undefined) this.host = head.host;
  }

  get headers(): Record<string, string> {
    return (this.joined ??= joinedFields(this.fields));
  }
}

function joinedFields(fields: RequestHead["headers"]): Record<string, string> {
  const headers = Object.create(null) as Record<string, string>;
  for (const h of fields) {
    const prev = headers[h.lower];
    headers[h.lower] = prev === undefined ? h.value : `${prev}, ${h.value}`;
  }
  return headers;
}

/**
 * A header that a rule of some stage names and that the request carries
 * more than once. The rules judge the joined value, but servers disagree
 * on repeats: many keep only the first (or the last) of a singleton field
 * such as Authorization, so the value a rule saw is not the value the
 * server acts on. Such a request is refused (400), whatever the verdict
 * would have been.
 */
export function repeatedRuleHeader(head: RequestHead, policy: L7LookupResult): boolean {
  // One stage (the common case): its memoised set as is; several: their union.
  let named = namedHeaders(policy.spec);
  for (let s = policy.also; s; s = s.also) named = new Set([...named, ...namedHeaders(s.spec)]);
  if (named.size === 0) return false;
  let seen: Set<string> | undefined;
  for (const h of head.headers) {
    if (!named.has(h.lower)) continue;
    if (seen?.has(h.lower)) return true;
    (seen ??= new Set()).add(h.lower);
  }
  return false;
}

// The header names a spec's rules name, per spec object (specs are immutable): a memo, not state.
const named = new WeakMap<L7Spec, ReadonlySet<string>>();

function namedHeaders(spec: L7Spec): ReadonlySet<string> {
  let n = named.get(spec);
  if (!n) {
    const s = new Set<string>();
    for (const r of spec.http) for (const h of r.headers) s.add(h.name.toLowerCase());
    named.set(spec, (n = s));
  }
  return n;
}

/**
 * `req`: the head to forward, the client's changed by the mismatch actions of every stage;
 * `judged`: the judged view of it (what a later look at the forwarded request sees).
 */
export type HeadVerdict = StagesVerdict<RequestHead>;

/**
 * Every stage must admit the request, each judging the field list as the
 * previous stage's actions left it (stages.ts). Throws when a stage's rules
 * do not compile (the caller fails closed).
 */
export function judgeHead(policy: L7LookupResult, head: RequestHead, path: string): HeadVerdict {
  return judgeStages(
    policy,
    head,
    (h) => judgedRequest(h, path),
    (h, actions) => ({ ...h, headers: editFields(h.headers, actions) }),
  );
}

/**
 * The field list after `actions` (LOG changes nothing), with the semantics of
 * applyHeaderActions (policy/l7/http.ts), which the next stage judges: ADD to a
 * header already present joins the values into one field (`a, b`), so what is
 * forwarded is one field holding exactly the value judged, never two fields a
 * server might read differently. New fields go last.
 */
function editFields(fields: readonly HeaderField[], actions: readonly HeaderAction[]): HeaderField[] {
  let out = [...fields];
  for (const a of actions) {
    const value = a.value ?? "";
    if (a.action === "DELETE" || a.action === "REPLACE") out = out.filter((f) => f.lower !== a.name);
    if (a.action === "REPLACE") out.push({ name: a.name, lower: a.name, value });
    if (a.action === "ADD") {
      const same = out.filter((f) => f.lower === a.name);
      if (same.length === 0) out.push({ name: a.name, lower: a.name, value });
      else {
        const joined = [...same.map((f) => f.value), value].join(", ");
        const at = out.indexOf(same[0] as HeaderField);
        out = out.filter((f) => f.lower !== a.name);
        out.splice(at, 0, { name: (same[0] as HeaderField).name, lower: a.name, value: joined });
      }
    }
  }
  return out;
}

/** Flow text of the actions: names and the values the policy gave, never the client's values. */
export function actionTexts(actions: readonly HeaderAction[]): string[] {
  return actions.map(actionText);
}
