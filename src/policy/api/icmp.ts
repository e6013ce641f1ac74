/** `icmps: [{fields: [{family, type}]}]`: ICMP types by number or CamelCase name. */
import type { IcmpField } from "../types.js";
import type { Val } from "./fields.js";
import { didYouMean } from "./suggest.js";

export const MAX_ICMP_FIELDS = 40;

export const ICMPV4_TYPES: Readonly<Record<string, number>> = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  RouterSolicitation: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
};

export const ICMPV6_TYPES: Readonly<Record<string, number>> = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  Redirect: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
};

/** Every field of every ICMP rule, flattened; undefined when something was reported. */
export function readIcmps(v: Val): IcmpField[] | undefined {
  const items = v.list();
  if (!items) return undefined;
  const before = v.ctx.problems.length;
  const out: IcmpField[] = [];
  for (const item of items) {
    const m = item.map(["fields"]);
    const fieldsVal = m?.need("fields");
    const fields = fieldsVal?.list() ?? [];
    if (fields.length > MAX_ICMP_FIELDS) {
      fieldsVal?.error(`at most ${MAX_ICMP_FIELDS} ICMP fields per entry, got ${fields.length}`);
    }
    for (const f of fields) {
      const field = readIcmpField(f);
      if (field) out.push(field);
    }
  }
  return v.ctx.problems.length > before ? undefined : out;
}

function readIcmpField(v: Val): IcmpField | undefined {
  const m = v.map(["family", "type"]);
  if (!m) return undefined;
  const famVal = m.get("family");
  const famText = famVal?.str();
  let family: "IPv4" | "IPv6" = "IPv4";
  if (famText === "IPv6" || famText === "IPv4") family = famText;
  else if (famText !== undefined) return famVal?.error(`unknown ICMP family "${famText}"; use IPv4 or IPv6`);
  else if (famVal) return undefined;
  const typeVal = m.need("type");
  const raw = typeVal?.strOrNum();
  if (typeVal === undefined || raw === undefined) return undefined;
  if (typeof raw === "number" || /^\d+$/.test(raw)) {
    const t = typeVal.int(0, 255, true);
    return t === undefined ? undefined : { family, type: t };
  }
  const names = family === "IPv4" ? ICMPV4_TYPES : ICMPV6_TYPES;
  const t = Object.hasOwn(names, raw) ? names[raw] : undefined;
  if (t !== undefined) return { family, type: t };
  const hint = didYouMean(raw, Object.keys(names));
  return typeVal.error(
    `unknown ${family} ICMP type "${raw}"` +
      (hint ? `; did you mean "${hint}"?` : "; use a number 0-255 or a name such as EchoRequest"),
  );
}
