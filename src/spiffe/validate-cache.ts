/**
 * Answers of validateX509Svid remembered per exact input, so that a handshake does not parse and
 * verify the same chain against the same bundle again (each validation parses every certificate of
 * the chain and of the bundle and checks signatures: milliseconds per call on a busy 2-core node,
 * paid on the first packet's path).
 *
 *   (trust domain, chain bytes, bundle bytes) --sha256--> key --> {answer, window}
 *   a hit counts only while `now` is inside the window in which every certificate of the path is
 *   valid (validate.ts computes it), so the answer is exactly what validating again would give.
 *
 * Only successes are kept: a refused chain is validated again each time (and its error names why).
 * Bounded: past MAX_ENTRIES the cache starts over. A miss still parses only the chain: the
 * bundle's roots are parsed once (ParsedRoots, validate.ts), ahead when `prepare` is told them.
 */
import { createHash } from "node:crypto";
import { ParsedRoots, validateX509Svid, type ValidSvid, type ValidateOptions } from "./validate.js";

const MAX_ENTRIES = 1024;

export class SvidValidationCache {
  private readonly m = new Map<string, ValidSvid>();
  private readonly roots = new ParsedRoots();
  /** Validations answered from the cache, and run for real. */
  readonly stats = { hits: 0, misses: 0 };

  /** Roots parsed and kept (each once, whatever the number of validations against it). */
  get parsedRoots(): number {
    return this.roots.size;
  }

  /** Parses a bundle's roots now (when they are published), not on the first validation that needs them. */
  prepare(bundle: readonly Uint8Array[]): void {
    for (const [i, d] of bundle.entries()) {
      try {
        this.roots.get(d, `bundle[${i}]`);
      } catch {
        // not a certificate: every validation against it names the error
      }
    }
  }

  validate(chain: readonly Uint8Array[], bundle: readonly Uint8Array[], o: ValidateOptions): ValidSvid {
    const now = o.now ?? Date.now();
    const h = createHash("sha256").update(`${o.trustDomain}\0${chain.length}\0${bundle.length}\0`);
    for (const d of [...chain, ...bundle]) h.update(`${d.length}:`).update(d);
    const key = h.digest("base64");
    const have = this.m.get(key);
    if (have && have.window.from <= now && now <= have.window.until) {
      this.stats.hits++;
      return have;
    }
    this.stats.misses++;
    const v = validateX509Svid(chain, bundle, { ...o, now }, this.roots);
    if (this.m.size >= MAX_ENTRIES) this.m.clear();
    this.m.set(key, v);
    return v;
  }
}
