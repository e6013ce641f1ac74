/**
 * Aliases (`*name`) of one document, resolved against an index built once,
 * and charged to a budget shared by the whole file.
 *
 *   Document --one visit--> alias -> anchored node        (last anchor before the alias, as YAML says)
 *   resolve(alias): budget -= nodes the value expands to  (nested aliases expanded, memoised)
 *
 * The policy reader walks YAML nodes itself (no toJS), so the library's
 * `maxAliasCount` never applies: ten lines of aliases nesting aliases would
 * make it visit billions of nodes. Charging each alias the size of what it
 * expands to bounds the walk by LIMITS.aliasNodes plus the document's own size.
 * An alias that refers to its own anchor expands without end and is refused.
 */
import { type Alias, type Document, isAlias, isMap, isPair, isSeq, type Node, visit } from "yaml";
import { LIMITS, limitError } from "./limits.js";

/** Nodes still allowed through aliases in one file (shared by its documents). */
export class AliasBudget {
  left: number = LIMITS.aliasNodes;
}

export class AliasIndex {
  private targets: Map<Alias, Node> | undefined;
  /** Expanded size of a node; capped at limit + 1 (enough to refuse). */
  private readonly sizes = new Map<unknown, number>();

  constructor(
    private readonly doc: Document,
    private readonly budget: AliasBudget,
    private readonly file: string,
    private readonly lineOf: (node: unknown) => number,
  ) {}

  /** The node `alias` names, after charging its expanded size; undefined for an unknown anchor. */
  resolve(alias: Alias): Node | undefined {
    const target = this.index().get(alias);
    if (target === undefined) return undefined;
    const cost = this.expandedSize(target);
    this.budget.left -= cost;
    if (this.budget.left < 0) throw limitError("aliasNodes", this.file, this.lineOf(alias));
    return target;
  }

  private index(): Map<Alias, Node> {
    if (this.targets) return this.targets;
    const targets = new Map<Alias, Node>();
    const anchors = new Map<string, Node>();
    // Document order, as Alias.resolve searches: an anchored node is seen before its children.
    visit(this.doc, {
      Node: (_key, node) => {
        if (isAlias(node)) {
          const t = anchors.get(node.source);
          if (t !== undefined) targets.set(node, t);
        } else if (node.anchor) {
          anchors.set(node.anchor, node);
        }
      },
    });
    this.targets = targets;
    return targets;
  }

  /** Nodes a walk meets below `root`, aliases expanded; without recursion (chains of aliases can be long). */
  private expandedSize(root: Node): number {
    const cap = LIMITS.aliasNodes + 1;
    const onPath = new Set<unknown>();
    const stack: { node: unknown; kids: unknown[] | undefined; sum: number }[] = [
      { node: root, kids: undefined, sum: 1 },
    ];
    let result = 0;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top === undefined) break;
      if (top.kids === undefined) {
        const known = this.sizes.get(top.node);
        if (known !== undefined) {
          stack.pop();
          result = this.give(stack, known);
          continue;
        }
        onPath.add(top.node);
        top.kids = children(top.node, (a) => this.index().get(a));
      }
      const next = top.kids.pop();
      if (next !== undefined && top.sum < cap) {
        // An alias back to a node being expanded never ends.
        if (onPath.has(next)) {
          top.sum = cap;
          continue;
        }
        stack.push({ node: next, kids: undefined, sum: isAlias(next) ? 0 : 1 });
        continue;
      }
      stack.pop();
      onPath.delete(top.node);
      const size = Math.min(top.sum, cap);
      this.sizes.set(top.node, size);
      result = this.give(stack, size);
    }
    return result;
  }

  private give(stack: { sum: number }[], size: number): number {
    const parent = stack[stack.length - 1];
    if (parent) parent.sum = Math.min(parent.sum + size, LIMITS.aliasNodes + 1);
    return size;
  }
}

function children(node: unknown, target: (a: Alias) => Node | undefined): unknown[] {
  if (isAlias(node)) {
    const t = target(node);
    return t === undefined ? [] : [t];
  }
  if (isMap(node) || isSeq(node)) {
    const out: unknown[] = [];
    for (const item of node.items as unknown[]) {
      if (isPair(item)) {
        if (item.key !== null && item.key !== undefined) out.push(item.key);
        if (item.value !== null && item.value !== undefined) out.push(item.value);
      } else if (item !== null && item !== undefined) {
        out.push(item);
      }
    }
    return out;
  }
  return [];
}
