/**
 * Hubble's GetFlowsRequest <-> our ObserveRequest.
 *
 *   GetFlowsRequest {whitelist, blacklist, number, first, follow, since, until}
 *     --observeRequestOf--> {filter: {allowlist: whitelist, denylist: blacklist}, number, since, until, follow} + first
 *   ObserveRequest --getFlowsRequestOf--> GetFlowsRequest (what `membrane observe --server` sends)
 *
 * Hubble's semantics: whitelist = OR of filters, each filter the AND of its
 * fields; a blacklist filter that matches excludes. A filter field this
 * server does not evaluate is refused (it is not in our schema, so it
 * arrives as an unknown field), never ignored: ignoring it would return
 * flows the client asked to leave out.
 */
import { fromJson, toJson, type Message } from "@bufbuild/protobuf";
import { MembraneError } from "../../errors.js";
import { compileFilter, type FlowFilter } from "../filter.js";
import type { ObserveRequest } from "../flags.js";
import { hubbleSchema } from "./schema.js";

export interface HubbleFlowsRequest extends ObserveRequest {
  /** The earliest `number` flows rather than the last. */
  first: boolean;
}

function invalid(why: string): MembraneError {
  return new MembraneError("FLOW_FILTER_INVALID", `Cannot serve GetFlows: ${why}`, {
    hint: "Use the FlowFilter fields this server lists in src/observe/hubble/proto/flow/flow.proto.",
  });
}

/** Unknown fields anywhere in the request (fields of Hubble's this schema lacks). */
function unknownFields(m: Message, path: string, out: string[]): void {
  const u = (m as { $unknown?: { no: number }[] }).$unknown;
  for (const f of u ?? []) out.push(`${path} field #${f.no}`);
  const rec = m as unknown as Record<string, unknown>;
  for (const k of ["whitelist", "blacklist"]) {
    const list = rec[k];
    if (Array.isArray(list)) list.forEach((x, i) => unknownFields(x as Message, `${k}[${i}]`, out));
  }
}

const ms = (v: unknown): number | undefined => (typeof v === "string" ? Date.parse(v) : undefined);

/** A decoded GetFlowsRequest as our request; throws FLOW_FILTER_INVALID naming what is wrong. */
export function observeRequestOf(m: Message): HubbleFlowsRequest {
  const s = hubbleSchema();
  const unknown: string[] = [];
  unknownFields(m, "request", unknown);
  if (unknown.length > 0) throw invalid(`unsupported ${unknown.join(", ")}`);
  const j = toJson(s.GetFlowsRequest, m, { useProtoFieldName: true }) as Record<string, unknown>;
  const allowlist = (j["whitelist"] ?? []) as FlowFilter[];
  const denylist = (j["blacklist"] ?? []) as FlowFilter[];
  const filter = { allowlist, denylist };
  compileFilter(filter); // throws FLOW_FILTER_INVALID with the field path
  const number = j["number"] === undefined ? undefined : Number(j["number"]);
  const since = ms(j["since"]);
  const until = ms(j["until"]);
  const first = j["first"] === true;
  const follow = j["follow"] === true;
  if (first && follow) throw invalid("first and follow cannot be combined");
  return {
    filter,
    follow,
    first,
    ...(number !== undefined && number > 0 ? { number } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
  };
}

/** Our request as Hubble's GetFlowsRequest message (for a client). */
export function getFlowsRequestOf(req: ObserveRequest): Message {
  const s = hubbleSchema();
  const body: Record<string, unknown> = {
    whitelist: req.filter.allowlist ?? [],
    blacklist: req.filter.denylist ?? [],
    follow: req.follow,
    ...(req.number !== undefined ? { number: String(req.number) } : {}),
    ...(req.since !== undefined ? { since: new Date(req.since).toISOString() } : {}),
    ...(req.until !== undefined ? { until: new Date(req.until).toISOString() } : {}),
  };
  try {
    return fromJson(s.GetFlowsRequest, body as never, { registry: s.registry });
  } catch (e) {
    throw new MembraneError(
      "FLOW_FILTER_INVALID",
      `Cannot ask a Hubble server for these flows: ${(e as Error).message}`,
      { hint: "Hubble's API has no such filter field; drop that flag with --server.", cause: e },
    );
  }
}
