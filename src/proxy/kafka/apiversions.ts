/**
 * Version negotiation through the proxy: a broker's ApiVersions response is
 * rewritten in place so that, for the request kinds whose topics we judge
 * (Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,
 * CreateTopics, DeleteTopics), it advertises no version newer than the
 * parser reads (MAX_TOPIC_VERSION). Clients pick min(their max, the broker's max),
 * so they stay inside what the proxy can enforce instead of being cut off.
 *
 *   response frame --clampApiVersions--> same bytes, max_version fields lowered | error
 *
 * Only fixed-width max_version fields change: the frame keeps its length.
 */
import { MAX_TOPIC_VERSION } from "./request.js";

export const API_VERSIONS_KEY = 18;
const UNSUPPORTED_VERSION = 35;

/**
 * Lowers the advertised max versions in `frame` (size prefix included) of an
 * ApiVersions response to a request of `requestVersion`. Returns an error
 * reason when the frame is not a well-formed ApiVersions response.
 */
export function clampApiVersions(frame: Buffer, requestVersion: number): string | undefined {
  let pos = 8; // size, correlation id (the ApiVersions response header has no tagged fields)
  const end = frame.length;
  const need = (n: number): number => {
    if (end - pos < n) throw new RangeError("short");
    const at = pos;
    pos += n;
    return at;
  };
  const uvarint = (): number => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = frame.readUInt8(need(1));
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    throw new RangeError("varint");
  };
  const tagged = (): void => {
    const n = uvarint();
    for (let i = 0; i < n; i++) {
      uvarint();
      need(uvarint());
    }
  };
  try {
    const errorCode = frame.readInt16BE(need(2));
    // An UNSUPPORTED_VERSION answer is written in version 0 whatever was asked.
    const flexible = requestVersion >= 3 && errorCode !== UNSUPPORTED_VERSION;
    const n = flexible ? uvarint() - 1 : frame.readInt32BE(need(4));
    if (n < 0 || n * 6 > end - pos) return "ApiVersions response with a bad count";
    for (let i = 0; i < n; i++) {
      const at = need(6);
      const key = frame.readInt16BE(at);
      const cap = MAX_TOPIC_VERSION[key];
      if (cap !== undefined && frame.readInt16BE(at + 4) > cap) frame.writeInt16BE(cap, at + 4);
      if (flexible) tagged();
    }
    return undefined;
  } catch {
    return "ApiVersions response shorter than its fields";
  }
}
