/**
 * ICMP type/code names as Hubble's icmp metric spells them (the notation of
 * Go's gopacket ICMPv4TypeCode/ICMPv6TypeCode String()):
 *
 *   (8, 0) -> "EchoRequest"; (3, 3) -> "DestinationUnreachable(Port)";
 *   (8, 5) -> "EchoRequest(Code: 5)"; (3, 99) -> "DestinationUnreachable(Code: 99)"; (42, 1) -> "42(1)"
 */

/** type -> [type name, code names (undefined: the type has no codes)] */
type Table = ReadonlyMap<number, readonly [string, readonly (string | undefined)[] | undefined]>;

const V4: Table = new Map([
  [0, ["EchoReply", undefined]],
  [
    3,
    [
      "DestinationUnreachable",
      [
        "Net",
        "Host",
        "Protocol",
        "Port",
        "FragmentationNeeded",
        "SourceRoutingFailed",
        "NetUnknown",
        "HostUnknown",
        "SourceIsolated",
        "NetAdminProhibited",
        "HostAdminProhibited",
        "NetTOS",
        "HostTOS",
        "CommAdminProhibited",
        "HostPrecedence",
        "PrecedenceCutoff",
      ],
    ],
  ],
  [4, ["SourceQuench", undefined]],
  [5, ["Redirect", ["Net", "Host", "TOS+Net", "TOS+Host"]]],
  [8, ["EchoRequest", undefined]],
  [9, ["RouterAdvertisement", undefined]],
  [10, ["RouterSolicitation", undefined]],
  [11, ["TimeExceeded", ["TTLExceeded", "FragmentReassemblyTimeExceeded"]]],
  [12, ["ParameterProblem", ["PointerIndicatesError", "MissingOption", "BadLength"]]],
  [13, ["TimestampRequest", undefined]],
  [14, ["TimestampReply", undefined]],
  [15, ["InfoRequest", undefined]],
  [16, ["InfoReply", undefined]],
  [17, ["AddressMaskRequest", undefined]],
  [18, ["AddressMaskReply", undefined]],
]);

const V6: Table = new Map([
  [
    1,
    [
      "DestinationUnreachable",
      [
        "NoRouteToDst",
        "AdminProhibited",
        "BeyondScopeOfSrc",
        "AddressUnreachable",
        "PortUnreachable",
        "SrcAddressFailedPolicy",
        "RejectRouteToDst",
      ],
    ],
  ],
  [2, ["PacketTooBig", undefined]],
  [3, ["TimeExceeded", ["HopLimitExceeded", "FragmentReassemblyTimeExceeded"]]],
  [4, ["ParameterProblem", ["ErroneousHeaderField", "UnrecognizedNextHeader", "UnrecognizedIPv6Option"]]],
  [128, ["EchoRequest", undefined]],
  [129, ["EchoReply", undefined]],
  [133, ["RouterSolicitation", undefined]],
  [134, ["RouterAdvertisement", undefined]],
  [135, ["NeighborSolicitation", undefined]],
  [136, ["NeighborAdvertisement", undefined]],
  [137, ["Redirect", undefined]],
]);

function name(table: Table, type: number, code: number): string {
  const info = table.get(type);
  if (info === undefined) return `${type}(${code})`;
  const [typeName, codes] = info;
  if (codes === undefined) return code === 0 ? typeName : `${typeName}(Code: ${code})`;
  const c = codes[code];
  return c === undefined ? `${typeName}(Code: ${code})` : `${typeName}(${c})`;
}

export function icmpv4TypeName(type: number, code: number): string {
  return name(V4, type, code);
}

export function icmpv6TypeName(type: number, code: number): string {
  return name(V6, type, code);
}
