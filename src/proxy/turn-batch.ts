/**
 * Items sent to the agent one IPC message per event-loop turn, at most `max` per message:
 *
 *   push(item) --> this turn's batch --setImmediate (once per turn) | `max` reached--> send(items)
 *
 * Why: a message per request or query costs the sender a serialisation and a pipe write each, and
 * the agent a read and a parse each; at saturation a turn serves several. The bound keeps one
 * message within what the agent accepts (the proxy's `l7-batch` is refused over MAX_L7_BATCH) and a
 * burst from growing one message without limit. Order is kept; nothing waits past its turn.
 * Shared by the node's proxy (runtime/main.ts) and the gateway process (gateway/event-batch.ts).
 */
export function batchPerTurn<T>(
  send: (items: T[]) => void,
  max: number,
  later: (f: () => void) => void = setImmediate,
): (item: T) => void {
  let batch: T[] = [];
  let scheduled = false;
  const flush = (): void => {
    if (batch.length === 0) return;
    const items = batch;
    batch = [];
    send(items);
  };
  return (item) => {
    if (batch.push(item) >= max) flush();
    else if (!scheduled) {
      scheduled = true;
      later(() => {
        scheduled = false;
        flush();
      });
    }
  };
}
