/**
 * Kafka rules of a port (Cilium's PortRuleKafka; semantics §7).
 *
 *   KafkaRule[] x {apiKey, apiVersion?, clientID?, topic(s)?}  --kafkaMatches-->  boolean
 *
 * A rule's set fields must all match (role or apiKey, apiVersion, clientID,
 * topic); an empty rule allows every request. The topic of a rule is ignored
 * for request kinds that carry no topics. A request naming several topics
 * passes only if every topic is allowed by some matching rule. Unknown API
 * key names or numbers match only rules without role/apiKey.
 */

/**
 * API key names (lower-case) and numbers, as in Cilium's KafkaAPIKeyMap
 * (pkg/policy/api/kafka/kafka.go): the one table the parser and the matcher share.
 */
export const KAFKA_API_KEYS: ReadonlyMap<string, number> = new Map([
  ["produce", 0],
  ["fetch", 1],
  ["offsets", 2],
  ["metadata", 3],
  ["leaderandisr", 4],
  ["stopreplica", 5],
  ["updatemetadata", 6],
  ["controlledshutdown", 7],
  ["offsetcommit", 8],
  ["offsetfetch", 9],
  ["findcoordinator", 10],
  ["joingroup", 11],
  ["heartbeat", 12],
  ["leavegroup", 13],
  ["syncgroup", 14],
  ["describegroups", 15],
  ["listgroups", 16],
  ["saslhandshake", 17],
  ["apiversions", 18],
  ["createtopics", 19],
  ["deletetopics", 20],
  ["deleterecords", 21],
  ["initproducerid", 22],
  ["offsetforleaderepoch", 23],
  ["addpartitionstotxn", 24],
  ["addoffsetstotxn", 25],
  ["endtxn", 26],
  ["writetxnmarkers", 27],
  ["txnoffsetcommit", 28],
  ["describeacls", 29],
  ["createacls", 30],
  ["deleteacls", 31],
  ["describeconfigs", 32],
  ["alterconfigs", 33],
  ["listoffsets", 2],
]);

/** The API keys each role stands for. */
export const KAFKA_ROLES: Readonly<Record<"produce" | "consume", ReadonlySet<number>>> = {
  produce: new Set([0, 3, 18]),
  consume: new Set([1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18]),
};

/**
 * Request kinds that carry topics (Cilium's list, pkg/policy/api/kafka): produce, fetch, offsets,
 * metadata, leaderandisr, stopreplica, updatemetadata, offsetcommit, offsetfetch, createtopics,
 * deletetopics, deleterecords, offsetforleaderepoch, addpartitionstotxn, writetxnmarkers,
 * txnoffsetcommit, alterreplicalogdirs, describelogdirs, createpartitions. A topic-restricted rule
 * grants one of these only when every topic the request names is the rule's; for the kinds whose
 * topics the proxy does not read, that is never (fail closed, as in Cilium).
 */
export const KAFKA_TOPIC_KEYS: ReadonlySet<number> = new Set([
  0, 1, 2, 3, 4, 5, 6, 8, 9, 19, 20, 21, 23, 24, 27, 28, 34, 35, 37,
]);

/** Number of an API key given by name (any case) or number; undefined when unknown. */
export function kafkaApiKeyNumber(key: string | number): number | undefined {
  if (typeof key === "number") return Number.isInteger(key) && key >= 0 && key <= 0x7fff ? key : undefined;
  return KAFKA_API_KEYS.get(key.toLowerCase());
}

/** Canonical name of an API key number (`offsets` for 2); undefined when unknown. */
export function kafkaApiKeyName(n: number): string | undefined {
  for (const [name, num] of KAFKA_API_KEYS) if (num === n) return name;
  return undefined;
}

export interface KafkaRuleLike {
  readonly role?: string;
  readonly apiKey?: string;
  readonly apiVersion?: number;
  readonly clientID?: string;
  readonly topic?: string;
}

export interface KafkaRequestLike {
  /** Name (`produce`, `fetch`, ...) or number. */
  readonly apiKey: string | number;
  readonly apiVersion?: number;
  readonly clientID?: string;
  readonly topic?: string;
  /** Every topic the request names (takes precedence over `topic`). */
  readonly topics?: readonly string[];
}

/** Whether any rule allows the request. No rules: nothing is allowed. */
export function kafkaMatches(rules: readonly KafkaRuleLike[], req: KafkaRequestLike): boolean {
  const key = kafkaApiKeyNumber(req.apiKey);
  const topics = req.topics ?? (req.topic !== undefined ? [req.topic] : []);
  const uncovered = new Set(topics);
  for (const rule of rules) {
    if (!keyMatches(rule, key)) continue;
    if (rule.apiVersion !== undefined && rule.apiVersion !== req.apiVersion) continue;
    if (rule.clientID !== undefined && rule.clientID !== req.clientID) continue;
    // A topic constraint only applies to request kinds that carry topics.
    if (rule.topic === undefined || key === undefined || !KAFKA_TOPIC_KEYS.has(key)) return true;
    // A topic-restricted rule never grants a request naming no topic (for
    // Metadata that means "all topics").
    if (uncovered.delete(rule.topic) && uncovered.size === 0) return true;
  }
  return false;
}

function keyMatches(rule: KafkaRuleLike, key: number | undefined): boolean {
  if (rule.apiKey !== undefined) {
    if (key === undefined || kafkaApiKeyNumber(rule.apiKey) !== key) return false;
  }
  if (rule.role !== undefined) {
    const role = rule.role.toLowerCase();
    const set = role === "produce" || role === "consume" ? KAFKA_ROLES[role] : undefined;
    if (key === undefined || !set || !set.has(key)) return false;
  }
  return true;
}
