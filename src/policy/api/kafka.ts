/** Kafka L7 rules (`rules.kafka`), validated as Cilium's kafka.PortRule.Sanitize. */
import type { KafkaRule } from "../types.js";
import type { Val } from "./fields.js";
import { didYouMean } from "./suggest.js";
import { KAFKA_API_KEYS } from "../l7/kafka.js";

/** Kafka API key names Cilium accepts (one table, shared with the matcher). */
const KAFKA_API_KEY_NAMES: readonly string[] = [...KAFKA_API_KEYS.keys()];

const TOPIC = /^[a-zA-Z0-9._-]+$/;

export function readKafkaRule(v: Val): KafkaRule | undefined {
  const m = v.map(["role", "apiKey", "apiVersion", "clientID", "topic"]);
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  const out: {
    role?: "produce" | "consume";
    apiKey?: string;
    apiVersion?: number;
    clientID?: string;
    topic?: string;
  } = {};
  const roleVal = m.get("role");
  const keyVal = m.get("apiKey");
  const role = roleVal?.str();
  const apiKey = keyVal?.str();
  if (role && apiKey) v.error(`set either role or apiKey, not both (role "${role}", apiKey "${apiKey}")`);
  if (role) {
    const r = role.toLowerCase();
    if (r === "produce" || r === "consume") out.role = r;
    else roleVal?.error(`unknown Kafka role "${role}"; use produce or consume`);
  }
  if (apiKey) {
    const k = apiKey.toLowerCase();
    if (KAFKA_API_KEY_NAMES.includes(k)) out.apiKey = k;
    else {
      const hint = didYouMean(k, KAFKA_API_KEY_NAMES);
      keyVal?.error(`unknown Kafka apiKey "${apiKey}"` + (hint ? `; did you mean "${hint}"?` : ""));
    }
  }
  const verVal = m.get("apiVersion");
  const ver = verVal?.int(0, 32767, true);
  if (ver !== undefined) out.apiVersion = ver;
  const clientID = m.get("clientID")?.str();
  if (clientID) out.clientID = clientID;
  const topicVal = m.get("topic");
  const topic = topicVal?.str();
  if (topic) {
    if (topic.length > 255) topicVal?.error("Kafka topics are at most 255 characters");
    else if (!TOPIC.test(topic))
      topicVal?.error(`invalid Kafka topic "${topic}": use letters, digits, ".", "_" and "-"`);
    else out.topic = topic;
  }
  return v.ctx.problems.length > before ? undefined : out;
}
