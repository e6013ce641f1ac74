/** `terminatingTLS` / `originatingTLS`: where the proxy finds its certificates. */
import type { TlsContext } from "../types.js";
import type { Val } from "./fields.js";
import { checkLabelName, checkSubdomain } from "./names.js";

export function readTls(v: Val): TlsContext | undefined {
  const m = v.map(["secret", "trustedCA", "certificate", "privateKey"]);
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  const sec = m.need("secret")?.map(["namespace", "name"]);
  const nameVal = sec?.need("name");
  const name = nameVal?.str();
  if (name !== undefined) {
    const bad = checkSubdomain(name);
    if (bad) nameVal?.error(bad);
  }
  const nsVal = sec?.get("namespace");
  const namespace = nsVal?.str();
  if (namespace !== undefined) {
    const bad = checkLabelName(namespace);
    if (bad) nsVal?.error(bad);
  }
  const opt: { trustedCA?: string; certificate?: string; privateKey?: string } = {};
  for (const f of ["trustedCA", "certificate", "privateKey"] as const) {
    const s = m.get(f)?.str();
    if (s !== undefined) opt[f] = s;
  }
  if (name === undefined || v.ctx.problems.length > before) return undefined;
  return { secret: namespace === undefined ? { name } : { namespace, name }, ...opt };
}
