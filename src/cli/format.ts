/**
 * Output formatting for the CLI: aligned text lines for people, one JSON
 * document for programs (`-o json`, nothing else on stdout).
 */
import { escapeControls, type Issue, formatIssue } from "../errors.js";
import type { QueryResult, ScenarioError, ScenarioResult } from "../policy/scenario/index.js";

/** One JSON document, pretty-printed, with a trailing newline. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}

/** Left-aligned columns separated by two spaces; trailing blanks trimmed. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

export function verdictText(v: "allow" | "deny", how: string | undefined): string {
  return v === "deny" && how !== undefined ? `deny/${how}` : v;
}

/** `tiefighter -> deathstar TCP/80 POST /v1/request-landing` */
export function flowText(r: Pick<QueryResult, "from" | "to" | "proto" | "port" | "icmpType" | "l7">): string {
  const port = r.port ?? r.icmpType;
  const l4 = port !== undefined ? `${r.proto}/${port}` : r.proto;
  return `${r.from} -> ${r.to} ${l4}${r.l7 !== undefined ? ` ${r.l7}` : ""}`;
}

/** The lines for one scenario: a header, then one aligned line per query. */
export function scenarioLines(
  s: ScenarioResult,
  opts: { debug?: boolean; verbose?: boolean } = {},
): string[] {
  const lines = [escapeControls(`=== ${s.name ?? "(not loaded)"} (${s.file})`)];
  if (s.error) {
    lines.push(
      ...errorLines(s.error, opts.debug === true).map((l, i) => (i === 0 ? `ERROR ${l}` : `      ${l}`)),
    );
    return lines;
  }
  lines.push(...warningLines(s.warnings));
  const rows = s.results.map((r) => [
    r.pass ? "PASS" : "FAIL",
    flowText(r),
    `expected=${verdictText(r.expect, r.expectHow)}`,
    `actual=${verdictText(r.actual, r.actualHow)}`,
    `by: ${r.decidedBy.join("; ")}`,
  ]);
  const out = table(rows);
  s.results.forEach((r, i) => {
    lines.push(out[i] ?? "");
    if (!r.pass && r.note !== undefined) lines.push(`      note: ${r.note}`);
    if (!r.pass && r.line !== undefined) lines.push(`      at: ${s.file}:${r.line} (queries[${r.index}])`);
  });
  return lines;
}

/** `WARN file:line: path: message`, one line per policy-parser warning. */
export function warningLines(warnings: readonly Issue[] | undefined): string[] {
  return (warnings ?? []).map((w) => `WARN  ${escapeControls(formatIssue(w))}`);
}

export function summaryLine(passed: number, failed: number): string {
  return `${passed} passed, ${failed} failed`;
}

/** An error as lines: message, issues (`file:line: path: message`), hint, stack with --debug. */
export function errorLines(e: ScenarioError, debug: boolean): string[] {
  const lines = [escapeControls(e.message), ...e.issues.map((i) => "  " + escapeControls(formatIssue(i)))];
  if (e.hint !== undefined) lines.push(`hint: ${escapeControls(e.hint)}`);
  if (debug && e.stack !== undefined) lines.push(...e.stack.split("\n"));
  return lines;
}

/** Counts for the summary: queries that passed and failed; an unloadable file counts as one failure. */
export function countResults(all: readonly ScenarioResult[]): { passed: number; failed: number } {
  let passed = 0;
  let failed = 0;
  for (const s of all) {
    if (s.error) failed++;
    for (const r of s.results) {
      if (r.pass) passed++;
      else failed++;
    }
  }
  return { passed, failed };
}

/** A ScenarioResult for `-o json`: stacks only with --debug. */
export function scenarioJson(s: ScenarioResult, debug: boolean): unknown {
  if (!s.error || debug || s.error.stack === undefined) return s;
  const { stack: _stack, ...error } = s.error;
  return { ...s, error };
}
