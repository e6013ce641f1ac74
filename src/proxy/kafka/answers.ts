/**
 * The answers a Kafka client is owed, in request order: the broker's
 * (streamed through, checked by correlation id) and our own denials (held
 * until every earlier answer went out). No sockets here: bytes in, bytes out.
 *
 *   expect(corr) / deny(bytes) / closeHere()      (one per request, in order)
 *   broker bytes --fromBroker--> bytes for the client, in order | error reason
 *
 * Only the 8-byte head of a broker response is held (size, correlation id);
 * its body is passed on as it arrives, so large Fetch answers are never
 * buffered. ApiVersions answers are held whole and rewritten (apiversions.ts).
 */
import { clampApiVersions } from "./apiversions.js";

type Owed =
  /** The broker owes this answer; `apiVersions` = version of an ApiVersions request. */
  | { readonly kind: "broker"; readonly correlationId: number; readonly apiVersions?: number }
  /** Our own answer (a denial), written when it reaches the head. */
  | { readonly kind: "local"; readonly bytes: Buffer }
  /** Close the connection when this reaches the head. */
  | { readonly kind: "close" };

export interface AnswerLimits {
  readonly maxResponseBytes: number;
  readonly maxApiVersionsBytes: number;
}

const EMPTY = Buffer.alloc(0);

export class AnswerQueue {
  private readonly owed: Owed[] = [];
  /** Head of the next broker response, until its correlation id is checked. */
  private head: Buffer = EMPTY;
  /** Bytes of the current broker response still to pass on. */
  private bodyLeft = 0;

  constructor(private readonly limits: AnswerLimits) {}

  /** Answers owed (broker, local and close markers). */
  get length(): number {
    return this.owed.length;
  }

  /** Answers the broker still owes. */
  brokerOwes(): number {
    return this.owed.filter((o) => o.kind === "broker").length;
  }

  expect(correlationId: number, apiVersions?: number): void {
    this.owed.push(
      apiVersions === undefined
        ? { kind: "broker", correlationId }
        : { kind: "broker", correlationId, apiVersions },
    );
  }

  deny(bytes: Buffer): void {
    this.owed.push({ kind: "local", bytes });
  }

  closeHere(): void {
    this.owed.push({ kind: "close" });
  }

  /** Moves our own answers at the head to `out`; "close" when a close marker reached the head. */
  takeLocal(out: Buffer[]): "close" | undefined {
    for (let o = this.owed[0]; o && o.kind !== "broker"; o = this.owed[0]) {
      if (o.kind === "close") return "close";
      out.push(o.bytes);
      this.owed.shift();
    }
    return undefined;
  }

  /**
   * Passes broker bytes on to `out` (with our answers that follow them).
   * Returns "close" when a close marker is reached, or an error reason: a
   * response nobody asked for, out of bounds, or for another correlation id.
   */
  fromBroker(d: Buffer, out: Buffer[]): { error: string } | "close" | undefined {
    let data = d;
    while (data.length > 0) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, data.length);
        out.push(data.subarray(0, n));
        data = data.subarray(n);
        this.bodyLeft -= n;
        if (this.bodyLeft === 0 && this.answered(out)) return "close";
        continue;
      }
      this.head = this.head.length === 0 ? data : Buffer.concat([this.head, data]);
      data = EMPTY;
      if (this.head.length < 8) return undefined;
      const size = this.head.readInt32BE(0);
      const corr = this.head.readInt32BE(4);
      const next = this.owed[0];
      if (next?.kind !== "broker") return { error: "broker sent a response nobody asked for" };
      if (size < 4 || size > this.limits.maxResponseBytes)
        return { error: `broker response size ${size} out of bounds` };
      if (corr !== next.correlationId)
        return { error: `broker response for correlation id ${corr}, expected ${next.correlationId}` };
      if (next.apiVersions !== undefined) {
        if (size > this.limits.maxApiVersionsBytes)
          return { error: `broker ApiVersions response size ${size} out of bounds` };
        if (this.head.length < 4 + size) return undefined;
        const frame = Buffer.from(this.head.subarray(0, 4 + size)); // a copy: it is rewritten
        const err = clampApiVersions(frame, next.apiVersions);
        if (err !== undefined) return { error: `broker sent a malformed ${err}` };
        out.push(frame);
        data = this.head.subarray(4 + size);
        this.head = EMPTY;
        if (this.answered(out)) return "close";
        continue;
      }
      out.push(this.head.subarray(0, 8));
      data = this.head.subarray(8);
      this.head = EMPTY;
      this.bodyLeft = size - 4;
      if (this.bodyLeft === 0 && this.answered(out)) return "close";
    }
    return undefined;
  }

  /** The broker's answer at the head is complete; true when a close marker follows. */
  private answered(out: Buffer[]): boolean {
    this.owed.shift();
    return this.takeLocal(out) === "close";
  }
}
