import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  KAFKA_ROLES,
  kafkaApiKeyName,
  kafkaApiKeyNumber,
  kafkaMatches,
  type KafkaRequestLike,
  type KafkaRuleLike,
} from "../../../src/policy/l7/kafka.js";

describe("Kafka API keys", () => {
  test("names map to Cilium's numbers", () => {
    const names = [
      "produce",
      "fetch",
      "offsets",
      "metadata",
      "leaderandisr",
      "stopreplica",
      "updatemetadata",
      "controlledshutdown",
      "offsetcommit",
      "offsetfetch",
      "findcoordinator",
      "joingroup",
      "heartbeat",
      "leavegroup",
      "syncgroup",
      "describegroups",
      "listgroups",
      "saslhandshake",
      "apiversions",
      "createtopics",
      "deletetopics",
    ];
    assert.deepEqual(
      names.map((n) => kafkaApiKeyNumber(n)),
      names.map((_, i) => i),
    );
    assert.deepEqual(
      names.map((_, i) => kafkaApiKeyName(i)),
      names,
    );
  });
  test("listoffsets is an alias of offsets", () => assert.equal(kafkaApiKeyNumber("listoffsets"), 2));
  test("names are case-insensitive", () => assert.equal(kafkaApiKeyNumber("Produce"), 0));
  test("unknown names and bad numbers are undefined", () => {
    assert.deepEqual(
      [kafkaApiKeyNumber("nope"), kafkaApiKeyNumber(-1), kafkaApiKeyNumber(1.5), kafkaApiKeyNumber(70000)],
      [undefined, undefined, undefined, undefined],
    );
  });
  test("roles expand to Cilium's key sets", () => {
    assert.deepEqual(
      [...KAFKA_ROLES.produce].sort((a, b) => a - b),
      [0, 3, 18],
    );
    assert.deepEqual(
      [...KAFKA_ROLES.consume].sort((a, b) => a - b),
      [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18],
    );
  });
});

describe("kafkaMatches", () => {
  const cases: { name: string; rules: KafkaRuleLike[]; req: KafkaRequestLike; want: boolean }[] = [
    {
      name: "the empty rule allows any request",
      rules: [{}],
      req: { apiKey: "deletetopics", topic: "t" },
      want: true,
    },
    { name: "no rules allow nothing", rules: [], req: { apiKey: "produce" }, want: false },
    {
      name: "role produce allows produce",
      rules: [{ role: "produce" }],
      req: { apiKey: 0, topic: "t" },
      want: true,
    },
    {
      name: "role produce allows metadata",
      rules: [{ role: "produce" }],
      req: { apiKey: "metadata" },
      want: true,
    },
    {
      name: "role produce refuses fetch",
      rules: [{ role: "produce" }],
      req: { apiKey: "fetch" },
      want: false,
    },
    { name: "role consume allows joingroup", rules: [{ role: "consume" }], req: { apiKey: 11 }, want: true },
    {
      name: "role consume refuses produce",
      rules: [{ role: "consume" }],
      req: { apiKey: "produce" },
      want: false,
    },
    { name: "role is case-insensitive", rules: [{ role: "CONSUME" }], req: { apiKey: "fetch" }, want: true },
    {
      name: "apiKey by name matches the number",
      rules: [{ apiKey: "fetch" }],
      req: { apiKey: 1 },
      want: true,
    },
    {
      name: "apiKey listoffsets matches offsets",
      rules: [{ apiKey: "listoffsets" }],
      req: { apiKey: "offsets" },
      want: true,
    },
    {
      name: "apiKey mismatch refuses",
      rules: [{ apiKey: "fetch" }],
      req: { apiKey: "produce" },
      want: false,
    },
    {
      name: "unknown request key refused by a keyed rule",
      rules: [{ apiKey: "fetch" }],
      req: { apiKey: "bogus" },
      want: false,
    },
    { name: "unknown request key allowed by the empty rule", rules: [{}], req: { apiKey: 42 }, want: true },
    {
      name: "apiVersion must be equal",
      rules: [{ apiVersion: 2 }],
      req: { apiKey: 0, apiVersion: 3 },
      want: false,
    },
    {
      name: "apiVersion equal matches",
      rules: [{ apiVersion: 2 }],
      req: { apiKey: 0, apiVersion: 2 },
      want: true,
    },
    {
      name: "apiVersion rule refuses a request without version",
      rules: [{ apiVersion: 0 }],
      req: { apiKey: 0 },
      want: false,
    },
    {
      name: "clientID must be equal",
      rules: [{ clientID: "app" }],
      req: { apiKey: 0, clientID: "App" },
      want: false,
    },
    {
      name: "topic must be equal for produce",
      rules: [{ topic: "a" }],
      req: { apiKey: "produce", topic: "b" },
      want: false,
    },
    {
      name: "topic equal matches",
      rules: [{ role: "produce", topic: "a" }],
      req: { apiKey: "produce", topic: "a" },
      want: true,
    },
    {
      name: "topic is ignored for heartbeat, which carries no topics",
      rules: [{ role: "consume", topic: "a" }],
      req: { apiKey: "heartbeat", topic: "b" },
      want: true,
    },
    {
      name: "a topic rule never grants DeleteRecords, whose topics the proxy does not read (fail closed, as Cilium)",
      rules: [{ apiKey: "deleterecords", topic: "orders" }],
      req: { apiKey: "deleterecords" },
      want: false,
    },
    {
      name: "nor CreatePartitions under a topic-restricted rule without apiKey",
      rules: [{ topic: "orders" }],
      req: { apiKey: 37 },
      want: false,
    },
    {
      name: "topic rule refuses a metadata request naming no topic",
      rules: [{ topic: "a" }],
      req: { apiKey: "metadata" },
      want: false,
    },
    {
      name: "every topic of a request must be allowed",
      rules: [{ topic: "a" }],
      req: { apiKey: "produce", topics: ["a", "b"] },
      want: false,
    },
    {
      name: "several rules together can allow several topics",
      rules: [{ topic: "a" }, { topic: "b" }],
      req: { apiKey: "produce", topics: ["a", "b"] },
      want: true,
    },
    {
      name: "a rule without topic allows every topic",
      rules: [{ topic: "a" }, { apiKey: "produce" }],
      req: { apiKey: "produce", topics: ["a", "z"] },
      want: true,
    },
    {
      name: "a topic granted by a rule whose clientID fails does not count",
      rules: [{ topic: "a", clientID: "x" }, { topic: "b" }],
      req: { apiKey: "produce", topics: ["a", "b"], clientID: "y" },
      want: false,
    },
    {
      name: "all fields of one rule are ANDed",
      rules: [{ role: "produce", topic: "a", clientID: "c", apiVersion: 1 }],
      req: { apiKey: "produce", topic: "a", clientID: "c", apiVersion: 2 },
      want: false,
    },
  ];
  for (const c of cases) test(c.name, () => assert.equal(kafkaMatches(c.rules, c.req), c.want));
});
