/**
 * The part of the Reflect metadata API that @peculiar/x509's dependency tsyringe checks for and
 * calls (defineMetadata, getMetadata, getOwnMetadata, hasMetadata, hasOwnMetadata), installed on
 * the global Reflect only if absent. The npm package `reflect-metadata` is the usual polyfill; it is
 * not a dependency of this project, and this is the little tsyringe needs (our code declares no
 * decorated classes: the lookups find nothing). Imported only through ./x509.ts.
 */
type Meta = Map<unknown, unknown>;
const store = new WeakMap<object, Map<string | symbol | undefined, Meta>>();

function own(target: object, prop: string | symbol | undefined, create: boolean): Meta | undefined {
  let byProp = store.get(target);
  if (!byProp && create) store.set(target, (byProp = new Map()));
  let m = byProp?.get(prop);
  if (!m && create && byProp) byProp.set(prop, (m = new Map()));
  return m;
}

export function installReflectMetadata(): void {
  const r = Reflect as unknown as Record<string, unknown>;
  if (typeof r["getMetadata"] === "function") return;
  const getOwn = (k: unknown, t: object, p?: string | symbol): unknown => own(t, p, false)?.get(k);
  const hasOwn = (k: unknown, t: object, p?: string | symbol): boolean => own(t, p, false)?.has(k) ?? false;
  const has = (k: unknown, t: object, p?: string | symbol): boolean => {
    for (let o: object | null = t; o; o = Object.getPrototypeOf(o) as object | null)
      if (hasOwn(k, o, p)) return true;
    return false;
  };
  Object.assign(r, {
    defineMetadata: (k: unknown, v: unknown, t: object, p?: string | symbol) =>
      void own(t, p, true)?.set(k, v),
    getOwnMetadata: getOwn,
    hasOwnMetadata: hasOwn,
    hasMetadata: has,
    getMetadata: (k: unknown, t: object, p?: string | symbol): unknown => {
      for (let o: object | null = t; o; o = Object.getPrototypeOf(o) as object | null) {
        if (hasOwn(k, o, p)) return getOwn(k, o, p);
      }
      return undefined;
    },
    metadata: (k: unknown, v: unknown) => (t: object, p?: string | symbol) => void own(t, p, true)?.set(k, v),
  });
}

installReflectMetadata();
