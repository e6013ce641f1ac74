/**
 * The agent's config file (`membrane agent --config /etc/membrane/agent.yaml`):
 * one YAML map whose keys are the agent's long flag names without "--"
 * (`cluster-store: etcd://10.0.0.5:2379`, `node-labels: {zone: a}`), so every
 * flag has a key. Flags given on the command line override the file; an
 * unknown key, or a value of the wrong kind, is an error naming the key and
 * its line. Negatable flags take booleans (`flows: false` = `--no-flows`).
 *
 *   file --parse + check keys against the command's options--> values
 *        --for each option not given on the command line--> setOptionValueWithSource(.., "config")
 */
import { readFileSync } from "node:fs";
import type { Command, Option } from "commander";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from "yaml";
import { MembraneError } from "../errors.js";

/** Largest config file read (a config is a few hundred bytes; anything huge is a mistake). */
const MAX_BYTES = 1 << 20;

export interface ConfigValue {
  readonly key: string;
  readonly line: number;
  readonly value: string | boolean;
}

function fail(file: string, line: number | undefined, message: string, hint?: string): MembraneError {
  return new MembraneError(
    "CONFIG_INVALID",
    `Cannot read the agent config ${file}${line ? ` line ${line}` : ""}: ${message}`,
    {
      location: { file, ...(line ? { line } : {}) },
      ...(hint ? { hint } : {}),
    },
  );
}

/** Parses the config text into flag values (lists joined with ",", maps as k=v,...). */
export function parseAgentConfig(text: string, file: string): ConfigValue[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  const line = (n: Node | null | undefined): number | undefined =>
    n?.range ? lc.linePos(n.range[0]).line : undefined;
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw fail(file, e?.linePos?.[0]?.line, e?.message.split("\n")[0] ?? "not YAML");
  }
  if (doc.contents === null) return [];
  if (!isMap(doc.contents))
    throw fail(file, line(doc.contents), "the file must be a map of flag names to values");
  const out: ConfigValue[] = [];
  for (const pair of doc.contents.items) {
    const k = pair.key as Node | null;
    const at = line(k) ?? 0;
    if (!isScalar(k) || typeof k.value !== "string") throw fail(file, at, "every key must be a flag name");
    const key = k.value;
    const v = pair.value as Node | null;
    const scalar = (n: Node | null, where: string): string | boolean => {
      if (!isScalar(n) || n.value === null || typeof n.value === "object")
        throw fail(file, line(n) ?? at, `${where} must be a string, number or boolean`);
      return typeof n.value === "boolean" ? n.value : String(n.value);
    };
    let value: string | boolean;
    if (isSeq(v)) value = v.items.map((i) => String(scalar(i as Node, `each item of ${key}`))).join(",");
    else if (isMap(v))
      value = v.items
        .map(
          (p) =>
            `${String(scalar(p.key as Node, `each key of ${key}`))}=${String(scalar(p.value as Node, `each value of ${key}`))}`,
        )
        .join(",");
    else value = scalar(v, `the value of ${key}`);
    out.push({ key, line: at, value });
  }
  return out;
}

function findOption(cmd: Command, key: string): { opt: Option; negate: boolean } | undefined {
  for (const opt of cmd.options) {
    if (opt.long === `--${key}`) return { opt, negate: opt.negate };
    if (opt.negate && opt.long === `--no-${key}`) return { opt, negate: false };
  }
  return undefined;
}

/** Applies the config file to `cmd`'s options that the command line did not set. */
export function applyAgentConfig(cmd: Command, file: string): void {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_BYTES) throw fail(file, undefined, `it is larger than ${MAX_BYTES} bytes`);
    text = buf.toString("utf8");
  } catch (e) {
    if (e instanceof MembraneError) throw e;
    throw fail(file, undefined, (e as Error).message);
  }
  for (const { key, line, value } of parseAgentConfig(text, file)) {
    const found = key === "config" ? undefined : findOption(cmd, key);
    if (!found) {
      throw fail(
        file,
        line,
        `unknown key ${JSON.stringify(key)}`,
        'keys are the agent\'s flag names without "--" (`membrane agent --help`)',
      );
    }
    const { opt, negate } = found;
    const attr = opt.attributeName();
    if (cmd.getOptionValueSource(attr) === "cli") continue; // the command line wins
    if (opt.negate || opt.isBoolean()) {
      if (typeof value !== "boolean") throw fail(file, line, `${key} must be true or false`);
      cmd.setOptionValueWithSource(attr, negate ? !value : value, "config");
      continue;
    }
    if (typeof value === "boolean") throw fail(file, line, `${key} needs a value, not ${String(value)}`);
    if (opt.argChoices && !opt.argChoices.includes(value))
      throw fail(file, line, `${key} ${JSON.stringify(value)} is not one of ${opt.argChoices.join(", ")}`);
    cmd.setOptionValueWithSource(attr, value, "config");
  }
}
