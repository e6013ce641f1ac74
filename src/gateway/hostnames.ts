/**
 * Hostnames as the Gateway API matches them: `*.example.com` stands for one
 * or more labels before `.example.com` (not `example.com` itself); a listener
 * and a route attach where their hostnames intersect; a request's Host picks
 * the most specific name: exact, then the longest wildcard, then "any" ("").
 */

export function isWildcard(h: string): boolean {
  return h.startsWith("*.");
}

/** Does `host` (a concrete name) fall under `pattern` (a name, a wildcard, or "" for any)? */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === "") return true;
  if (!isWildcard(pattern)) return pattern === host;
  const suffix = pattern.slice(1); // ".example.com"
  return host.length > suffix.length && host.endsWith(suffix);
}

/**
 * The names under which a route is served on a listener: the intersection of
 * the listener's hostname (undefined: any) and the route's hostnames (empty:
 * any). [""] means any host; [] means they do not intersect.
 */
export function intersectHostnames(listener: string | undefined, route: readonly string[]): string[] {
  if (route.length === 0) return [listener ?? ""];
  if (listener === undefined || listener === "") return [...new Set(route)];
  const out = new Set<string>();
  for (const r of route) {
    if (r === listener) out.add(r);
    else if (!isWildcard(r) && hostMatches(listener, r)) out.add(r);
    else if (isWildcard(r) && !isWildcard(listener) && hostMatches(r, listener)) out.add(listener);
    else if (isWildcard(r) && isWildcard(listener)) {
      // Both wildcards: the more specific one, if it lies under the other.
      if (r.length > listener.length && r.endsWith(listener.slice(1))) out.add(r);
      else if (listener.length > r.length && listener.endsWith(r.slice(1))) out.add(listener);
    }
  }
  return [...out];
}

/**
 * How specific a pattern is, for choosing among those a host matches:
 * exact names first, then wildcards by length, then "any".
 */
export function specificity(pattern: string): number {
  if (pattern === "") return 0;
  return isWildcard(pattern) ? 1 + pattern.length : 1_000_000 + pattern.length;
}

/** The most specific of `patterns` that `host` matches; undefined if none does. */
export function bestMatch<T>(items: readonly T[], pattern: (t: T) => string, host: string): T | undefined {
  let best: T | undefined;
  let score = -1;
  for (const it of items) {
    const p = pattern(it);
    if (!hostMatches(p, host)) continue;
    const s = specificity(p);
    if (s > score) {
      best = it;
      score = s;
    }
  }
  return best;
}

/** The Host header as a route hostname is compared with it: lower case, no port, no trailing dot. */
export function requestHost(host: string | undefined): string {
  if (!host) return "";
  let h = host.toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.lastIndexOf(":");
  if (colon >= 0) h = h.slice(0, colon);
  return h.endsWith(".") ? h.slice(0, -1) : h;
}
