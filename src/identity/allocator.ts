/**
 * Numeric identities from label sets.
 *
 *   identity-relevant labels --allocate--> {id, labels}   same labels, same id
 *
 * Cluster identities (workloads) come from [256, 65535]; local identities
 * (CIDR and FQDN peers, never sent between nodes) from [2^24, 2^25). Reserved
 * identities are fixed and never allocated. Allocations are reference
 * counted; `snapshot`/`restore` let a store persist them so that an identity
 * keeps its number across agent restarts and across nodes.
 *
 * Cluster mode: `clusterNumber` says which number the cluster gave a label set
 * (decided elsewhere, asynchronously, before the engine asks). A label set it
 * has no number for yet gets the reserved `init` identity (Cilium's "identity
 * not resolved yet": the policy core puts it in default deny both ways) and is
 * listed by `takePending()` until a later allocate finds its number.
 */
import { MembraneError } from "../errors.js";
import type { LabelSet } from "../labels/label.js";
import type { Prefix } from "../labels/cidr.js";
import {
  CLUSTER_ID_MAX,
  CLUSTER_ID_MIN,
  ID,
  LOCAL_ID_MAX,
  LOCAL_ID_MIN,
  RESERVED_LABELS,
} from "./reserved.js";

export interface Identity {
  readonly id: number;
  readonly labels: LabelSet;
  /** For local CIDR identities: the prefix the identity stands for. */
  readonly prefix?: Prefix;
}

export interface IdentitySnapshotEntry {
  id: number;
  labels: string;
}

/** Where allocations are kept; the store implements it to persist them. */
export interface IdentityAllocatorLike {
  allocate(labels: LabelSet): Identity;
  allocateLocal(labels: LabelSet, prefix?: Prefix): Identity;
  release(id: number): void;
  get(id: number): Identity | undefined;
  all(): Iterable<Identity>;
}

export class IdentityAllocator implements IdentityAllocatorLike {
  private readonly byId = new Map<number, Identity>();
  private readonly byLabels = new Map<string, Identity>();
  private readonly refs = new Map<number, number>();
  private nextCluster = CLUSTER_ID_MIN;
  private nextLocal = LOCAL_ID_MIN;
  private readonly clusterNumber: ((labels: LabelSet) => number | undefined) | undefined;
  /** Label sets given `init` because the cluster had no number for them yet. */
  private readonly waiting = new Map<string, LabelSet>();

  constructor(
    opts: {
      restore?: readonly Identity[];
      /** Cluster mode: the cluster's number for a label set, undefined while it has none. */
      clusterNumber?: (labels: LabelSet) => number | undefined;
    } = {},
  ) {
    this.clusterNumber = opts.clusterNumber;
    for (const [id, labels] of RESERVED_LABELS) {
      const ident = { id, labels };
      this.byId.set(id, ident);
    }
    for (const i of opts.restore ?? []) {
      this.byId.set(i.id, i);
      this.byLabels.set(i.labels.toString(), i);
    }
  }

  allocate(labels: LabelSet): Identity {
    return this.take(labels, undefined, "cluster");
  }

  allocateLocal(labels: LabelSet, prefix?: Prefix): Identity {
    return this.take(labels, prefix, "local");
  }

  private take(labels: LabelSet, prefix: Prefix | undefined, scope: "cluster" | "local"): Identity {
    const key = labels.toString();
    let ident = this.byLabels.get(key);
    if (!ident && scope === "cluster" && this.clusterNumber) {
      const id = this.clusterNumber(labels);
      const holder = id === undefined ? undefined : this.byId.get(id);
      if (id === undefined || holder !== undefined || id < CLUSTER_ID_MIN || id >= LOCAL_ID_MIN) {
        // No number yet (or one this node still uses for other labels): closed until resolved.
        this.waiting.set(key, labels);
        return this.byId.get(ID.init) as Identity;
      }
      this.waiting.delete(key);
      ident = { id, labels };
      this.byId.set(id, ident);
      this.byLabels.set(key, ident);
    }
    if (!ident) {
      const id = scope === "cluster" ? this.freeId("cluster") : this.freeId("local");
      ident = prefix ? { id, labels, prefix } : { id, labels };
      this.byId.set(id, ident);
      this.byLabels.set(key, ident);
    }
    this.refs.set(ident.id, (this.refs.get(ident.id) ?? 0) + 1);
    return ident;
  }

  private freeId(scope: "cluster" | "local"): number {
    const [min, max] = scope === "cluster" ? [CLUSTER_ID_MIN, CLUSTER_ID_MAX] : [LOCAL_ID_MIN, LOCAL_ID_MAX];
    let next = scope === "cluster" ? this.nextCluster : this.nextLocal;
    for (let tries = 0; tries <= max - min; tries++) {
      if (next > max) next = min;
      if (!this.byId.has(next)) {
        if (scope === "cluster") this.nextCluster = next + 1;
        else this.nextLocal = next + 1;
        return next;
      }
      next++;
    }
    throw new MembraneError(
      "IDENTITY_EXHAUSTED",
      `Cannot allocate a ${scope} identity: all of ${min}..${max} are in use`,
      { hint: "Fewer distinct label sets, or remove identity-irrelevant labels from workloads." },
    );
  }

  /** Drops one reference; the identity is freed when none is left. Reserved identities are never freed. */
  release(id: number): void {
    const n = (this.refs.get(id) ?? 0) - 1;
    if (n > 0) {
      this.refs.set(id, n);
      return;
    }
    this.refs.delete(id);
    const ident = this.byId.get(id);
    if (ident && !RESERVED_LABELS.has(id)) {
      this.byId.delete(id);
      this.byLabels.delete(ident.labels.toString());
    }
  }

  get(id: number): Identity | undefined {
    return this.byId.get(id);
  }

  /**
   * Cluster mode: the label sets handed `init` since the last call, because the cluster had no number
   * for them (see the file comment). Drained: a set still without a number is listed again when asked again.
   */
  takePending(): LabelSet[] {
    const out = [...this.waiting.values()];
    this.waiting.clear();
    return out;
  }

  lookup(labels: LabelSet): Identity | undefined {
    return this.byLabels.get(labels.toString());
  }

  all(): Iterable<Identity> {
    return this.byId.values();
  }
}
