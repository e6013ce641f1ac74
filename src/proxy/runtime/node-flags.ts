/**
 * Node/V8 options of the proxy process (the supervisor starts it with them)
 * and of the gateway process (gateway/runner.ts); the proxy and gateway
 * benchmarks start their servers the same way.
 *
 * A larger young generation: every request leaves a few KB of short-lived
 * objects (parsed heads, events, buffers), and with V8's default semi-space
 * the process ran a scavenge every few thousand requests, each waking GC
 * helper threads. 32 MB semi-spaces made a scavenge several times rarer and
 * gave 1.3-1.6x the HTTP requests per CPU-second in the proxy benchmark
 * (side by side, same build). The cost is memory: the young generation may
 * grow to about 3 x 32 MB before it is collected.
 *
 * A floor under it: the maximum alone did not hold. V8 shrinks the young
 * generation back to its 1 MB default whenever the process goes quiet for a
 * few seconds (every proxy between bursts, the benchmark's proxy between its
 * rounds), and grows it again only slowly: at 2,000 requests/s after ten
 * quiet seconds the HTTP proxy ran a scavenge every ~130 ms (37 per 10,000
 * requests, pauses 0.15-1.7 ms, median 0.3), enough requests caught behind
 * one to show in the p99. With 8 MB as the least: 5 per 10,000 (`--trace-gc`),
 * for ~6-11 MB more resident memory.
 *
 * 16 MB, not 8: at 2,000 requests/s after ten quiet seconds, 2.6 scavenges per 10,000
 * requests instead of 5.6 (`--trace-gc`, session 17; each pause 0.3-3 ms holds the ~8
 * requests in flight, a sizeable part of the 1% that sets the p99), for 92 MB resident
 * instead of 77. The figure last session ("16 MB: no fewer") did not reproduce.
 */
export const PROXY_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32", "--min-semi-space-size=16"];
