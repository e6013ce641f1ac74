/**
 * membrane-cni's fast path: the installed plugin is a small native shim
 * (native/membrane-cni-shim.c) that forwards its CNI environment and stdin
 * here; the agent runs the plugin's own logic (src/cni/plugin.ts run()) and
 * answers the plugin's stdout and exit status, which the shim prints as they are.
 *
 *   shim ──POST /v1/cni/invoke {env: {CNI_*}, stdin}──▶ run(env, stdin, call) ──▶ the CNI routes, in process
 *        ◀── 200, Membrane-Cni-Exit: 0|1, body = the plugin's stdout
 *
 * `call` goes through the same routing table and body checks as the Node
 * plugin's HTTP requests, with its timeout, and errors rebuilt as the client
 * rebuilds them, so both binaries answer alike. An answer without
 * Membrane-Cni-Exit (a refused body, an older agent) tells the shim that
 * nothing ran: it hands the call to the Node plugin.
 */
import { MembraneError } from "../../errors.js";
import { MAX_STDIN, run, type AgentCall } from "../../cni/plugin.js";
import { badField, fields, isObject, kindOf, string } from "./body.js";
import { RawAnswer, Router, type ApiRequest, type Method, type Route } from "./router.js";
import { errorBody, errorFromBody, JSON_TYPE } from "./wire.js";

/** The CNI_* variables the plugin reads (CNI_PATH only passes through). */
const ENV_KEYS = new Set([
  "CNI_COMMAND",
  "CNI_CONTAINERID",
  "CNI_NETNS",
  "CNI_IFNAME",
  "CNI_ARGS",
  "CNI_PATH",
]);
const ENV_MAX = 65_536;

/** An AgentCall answered by `routes` in this process (what the Node plugin gets over the socket). */
export function inProcessCall(routes: readonly Route[]): AgentCall {
  const router = new Router(routes);
  return async (_socket, timeoutMs, method, path, body) => {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      const m = router.match(method, path);
      if (m.kind !== "found" || m.route.kind === "stream")
        throw new MembraneError(
          "API_ROUTE_NOT_FOUND",
          `Cannot ${method} ${path}: the agent has no such route`,
        );
      const req: ApiRequest = {
        method: method as Method,
        path,
        params: m.params,
        query: new URLSearchParams(),
        // As it would arrive over the socket: plain JSON.
        body: body === undefined ? undefined : (JSON.parse(JSON.stringify(body)) as unknown),
        signal: controller.signal,
      };
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new MembraneError(
                "AGENT_UNREACHABLE",
                `Cannot ${method} ${path}: no answer from the agent within ${timeoutMs / 1000} s; the request may still be applied`,
              ),
            ),
          timeoutMs,
        );
      });
      const out: unknown = await Promise.race([Promise.resolve(m.route.handler(req)), timeout]);
      return out === undefined ? undefined : (JSON.parse(JSON.stringify(out)) as unknown);
    } catch (e) {
      if (e instanceof MembraneError && e.code === "AGENT_UNREACHABLE") throw e;
      const err =
        e instanceof MembraneError
          ? e
          : new MembraneError("API_FAILED", `Cannot ${method} ${path}: the agent failed internally`, {
              cause: e,
              hint: "the agent's log has the details",
            });
      throw errorFromBody(errorBody(err)) ?? err;
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  };
}

/** POST /v1/cni/invoke: the plugin run for the shim; `call` answers the plugin's requests. */
export function cniInvokeRoute(call: AgentCall): Route {
  return {
    method: "POST",
    path: "/v1/cni/invoke",
    handler: async (req) => {
      const b = fields(req, { env: "required", stdin: "required" });
      const envIn = b["env"];
      if (!isObject(envIn)) throw badField(req, "env", `must be an object, not ${kindOf(envIn)}`);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(envIn)) {
        if (!ENV_KEYS.has(k)) throw badField(req, `env.${k}`, `is not one of ${[...ENV_KEYS].join(", ")}`);
        if (typeof v !== "string" || v.length > ENV_MAX)
          throw badField(req, `env.${k}`, `must be a string of at most ${ENV_MAX} characters`);
        env[k] = v;
      }
      const stdin = string(req, b, "stdin", MAX_STDIN);
      const out = await run(env, stdin, call);
      return new RawAnswer(
        200,
        { "Content-Type": JSON_TYPE, "Membrane-Cni-Exit": String(out.status) },
        out.stdout === "" ? "" : `${out.stdout}\n`,
      );
    },
  };
}
