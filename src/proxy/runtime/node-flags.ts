/**
 * Node/V8 options of the proxy process (the supervisor starts it with them;
 * the proxy benchmark starts its proxy-server the same way).
 *
 * A larger young generation: every request leaves a few KB of short-lived
 * objects (parsed heads, events, buffers), and with V8's default semi-space
 * the process ran a scavenge every few thousand requests, each waking GC
 * helper threads. 32 MB semi-spaces made a scavenge several times rarer and
 * gave 1.3-1.6x the HTTP requests per CPU-second in the proxy benchmark
 * (side by side, same build). The cost is memory: the young generation may
 * grow to about 3 x 32 MB before it is collected.
 */
export const PROXY_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32"];
