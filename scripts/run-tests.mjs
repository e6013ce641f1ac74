// Runs every compiled test file with Node's own test runner, several files at a time.
//
//   node scripts/run-tests.mjs [-j N] [--record] [path-substring ...]
//
// Each file runs in its own `node --test --test-reporter=spec <file>` process group, LANES of them at
// once (default: cores + 1, 3 on CI's 2 cores: most of a file's time is waiting on sleeps, timeouts and
// process starts, not CPU; MEMBRANE_TEST_JOBS or -j overrides, -j 1 runs them one at a time). A file's output is printed whole
// when it ends, so files never interleave. Files are started longest first (scripts/test-durations.json,
// measured; a file not listed there counts as a medium one), which keeps the last lane from running
// alone at the end; --record writes this run's durations there. Files in SERIAL run afterwards with the
// machine to themselves.
//
// At the end: the slowest files, every failing file with its failing tests and what they said, the totals as
// "tests: N passed, N failed, N skipped", and exit code 1 when any file failed (a failing test, a
// cancelled one, a crash, or the per-file timeout MEMBRANE_TEST_FILE_TIMEOUT_S, default 900 s).
// When a file's process ends, whatever it left running is killed and named in the summary: its process
// group, and every process whose environment carries the file's MEMBRANE_TEST_RUN token (children
// that moved to groups of their own, such as etcd, inherit it).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";

/**
 * Files that need the machine to themselves, with the reason. They run one at a time after the others.
 * Keep this list short: every entry costs its full duration of wall time.
 */
const SERIAL = new Map([
  // ["test/path/file.test.ts", "why it cannot share the machine"],
]);

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

function parseArgs(argv) {
  let jobs = Number(process.env["MEMBRANE_TEST_JOBS"] ?? Math.max(2, availableParallelism() + 1));
  const only = [];
  let record = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-j" || a === "--jobs") jobs = Number(argv[++i]);
    else if (a.startsWith("-j")) jobs = Number(a.slice(2));
    else if (a === "--record") record = true;
    else if (a === "-h" || a === "--help") {
      console.log(
        "usage: node scripts/run-tests.mjs [-j N] [--record] [path-substring ...]  (after npm run build)\n" +
          "  -j N       files at a time (default: cores + 1, or MEMBRANE_TEST_JOBS)\n" +
          "  --record   write each file's duration to scripts/test-durations.json (the start order)",
      );
      process.exit(0);
    } else only.push(a);
  }
  if (!Number.isInteger(jobs) || jobs < 1) {
    console.error(`run-tests: -j / MEMBRANE_TEST_JOBS must be a whole number >= 1 (got ${String(jobs)})`);
    process.exit(2);
  }
  return { jobs, only, record };
}

const DURATIONS = new URL("./test-durations.json", import.meta.url);

/** Measured seconds per file (dist path, as test/... .ts), or {} when the file is missing. */
function knownDurations() {
  try {
    return JSON.parse(readFileSync(DURATIONS, "utf8"));
  } catch {
    return {};
  }
}

const srcName = (f) => f.replace(/^dist\//, "").replace(/\.js$/, ".ts");
const fileTimeoutMs = Number(process.env["MEMBRANE_TEST_FILE_TIMEOUT_S"] ?? 900) * 1000;
const UNKNOWN_S = 30;

/** The counts the spec reporter prints last ("ℹ pass 12"); undefined when the file never got there. */
function counts(out) {
  const get = (k) => {
    const m = new RegExp(`^\\u2139 ${k} (\\d+)$`, "m").exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const tests = get("tests");
  if (tests === undefined) return undefined;
  return {
    tests,
    pass: get("pass") ?? 0,
    fail: get("fail") ?? 0,
    cancelled: get("cancelled") ?? 0,
    skipped: get("skipped") ?? 0,
    todo: get("todo") ?? 0,
  };
}

const running = new Set();

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Live processes (not zombies) whose environment holds `marker`: "pid command line" each. */
function marked(marker) {
  const out = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${pid}/environ`).includes(marker)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      const args = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").join(" ").trim();
      out.push(`${pid} ${args.slice(0, 160)}`);
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return out;
}

/** Kills what a file left behind (see the header); returns what was still running. */
function sweep(child, marker) {
  killGroup(child, "SIGKILL");
  const left = marked(marker);
  for (const l of left) {
    try {
      process.kill(Number(l.split(" ")[0]), "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  return left;
}

/** Runs one file in its own process group; resolves with its output, exit, counts and seconds. */
function runFile(file) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const token = randomBytes(6).toString("hex");
    const marker = `MEMBRANE_TEST_RUN=${token}`;
    const child = spawn(process.execPath, ["--test", "--test-reporter=spec", file], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: process.env["FORCE_COLOR"] ?? "0", MEMBRANE_TEST_RUN: token },
    });
    child.marker = marker;
    running.add(child);
    const chunks = [];
    child.stdout.on("data", (d) => chunks.push(d));
    child.stderr.on("data", (d) => chunks.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, "SIGKILL");
    }, fileTimeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      const left = sweep(child, marker);
      const out = Buffer.concat(chunks).toString("utf8");
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      resolve({ file, out, code, signal, timedOut, seconds, counts: counts(out), left });
    });
  });
}

function failed(r) {
  return r.code !== 0 || r.timedOut || r.counts === undefined || r.counts.fail > 0 || r.counts.cancelled > 0;
}

/** The names of the failing tests in a spec output (its "✖" lines), without repeats. */
function failingTests(out) {
  const names = new Set();
  for (const line of out.split("\n")) {
    const m = /^\s*\u2716 (.*?)(?: \([\d.]+m?s\))?$/.exec(line);
    if (m && m[1] !== "failing tests:") names.add(m[1]);
  }
  return [...names];
}

/**
 * What the failing tests said: the spec reporter's closing "failing tests:" section (each failing
 * test with its error), stack frames dropped, at most `max` lines. The summary repeats it so that
 * a log cut to its tail still says why, not only what, failed.
 */
function failureReasons(out, max = 40) {
  const at = out.lastIndexOf("\u2716 failing tests:");
  if (at < 0) return [];
  const lines = out
    .slice(at)
    .split("\n")
    .slice(1)
    .filter((l) => l.trim() !== "" && !/^\s+at /.test(l) && !/^\s*\^+\s*$/.test(l))
    .map((l) => (l.length > 300 ? l.slice(0, 300) + " ..." : l));
  return lines.length > max
    ? [...lines.slice(0, max), `    ... (${lines.length - max} more lines above)`]
    : lines;
}

function fmtS(s) {
  return s >= 60
    ? `${Math.floor(s / 60)} min ${(s % 60).toFixed(0).padStart(2, "0")} s`
    : `${s.toFixed(1)} s`;
}

async function main() {
  const { jobs, only, record } = parseArgs(process.argv.slice(2));
  const files = walk("dist/test", [])
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .sort();
  if (files.length === 0) {
    console.error("no test files found under dist/test (did the build run? try: npm run build)");
    process.exit(1);
  }
  const known = knownDurations();
  const weight = (f) => known[srcName(f)] ?? UNKNOWN_S;
  const isSerial = (f) => SERIAL.has(srcName(f));
  const parallel = files
    .filter((f) => !isSerial(f))
    .sort((a, b) => weight(b) - weight(a) || a.localeCompare(b));
  const serial = files.filter(isSerial);

  for (const sig of ["SIGINT", "SIGTERM"])
    process.on(sig, () => {
      for (const c of running) sweep(c, c.marker);
      process.exit(130);
    });

  console.log(
    `run-tests: ${files.length} files, ${Math.min(jobs, parallel.length)} at a time` +
      (serial.length > 0 ? `, then ${serial.length} alone` : "") +
      ` (load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`,
  );
  const t0 = Date.now();
  const results = [];
  let done = 0;
  const report = (r) => {
    done++;
    const mark = failed(r) ? "FAIL" : "ok";
    console.log(`\n=== [${done}/${files.length}] ${mark} ${srcName(r.file)} (${fmtS(r.seconds)})`);
    process.stdout.write(r.out.endsWith("\n") || r.out === "" ? r.out : r.out + "\n");
    if (r.timedOut)
      console.log(`run-tests: killed after ${fileTimeoutMs / 1000} s (MEMBRANE_TEST_FILE_TIMEOUT_S)`);
    else if (r.code !== 0 && r.counts === undefined)
      console.log(
        `run-tests: the file's process ended with ${r.signal ?? `exit code ${r.code}`} before its summary`,
      );
    for (const l of r.left) console.log(`run-tests: left running by ${srcName(r.file)}, killed: ${l}`);
    results.push(r);
  };

  const queue = [...parallel];
  const lane = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) report(await runFile(f));
  };
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, lane));
  for (const f of serial) {
    console.log(`\nrun-tests: ${srcName(f)} alone: ${SERIAL.get(srcName(f))}`);
    report(await runFile(f));
  }
  const wall = (Date.now() - t0) / 1000;

  const total = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
  for (const r of results) for (const k of Object.keys(total)) total[k] += r.counts?.[k] ?? 0;
  const sum = results.reduce((s, r) => s + r.seconds, 0);

  console.log("\n=== slowest files");
  for (const r of [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 15))
    console.log(`${r.seconds.toFixed(1).padStart(7)} s  ${srcName(r.file)}`);

  const leaky = results.filter((r) => r.left.length > 0);
  if (leaky.length > 0) {
    console.log(`\n=== ${leaky.length} file${leaky.length === 1 ? "" : "s"} left processes running (killed)`);
    for (const r of leaky) console.log(`${srcName(r.file)}: ${r.left.join("; ")}`);
  }

  const bad = results.filter(failed);
  if (bad.length > 0) {
    console.log(`\n=== ${bad.length} failing file${bad.length === 1 ? "" : "s"}`);
    for (const r of bad) {
      const why = r.timedOut
        ? "timed out"
        : r.counts === undefined
          ? `ended (${r.signal ?? `exit ${r.code}`}) before its summary`
          : `${r.counts.fail} failed, ${r.counts.cancelled} cancelled`;
      console.log(`${srcName(r.file)}: ${why}`);
      for (const t of failingTests(r.out).slice(0, 20)) console.log(`  \u2716 ${t}`);
      for (const l of failureReasons(r.out)) console.log(`    | ${l}`);
    }
  }
  console.log(
    `\n${files.length} file${files.length === 1 ? "" : "s"} in ${fmtS(wall)} wall, ${fmtS(sum)} of file time, ${Math.min(jobs, parallel.length)} at a time` +
      ` (load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`,
  );
  if (record) {
    const next = { ...known };
    for (const r of results) next[srcName(r.file)] = Math.round(r.seconds * 10) / 10;
    const sorted = Object.fromEntries(Object.entries(next).sort(([a], [b]) => a.localeCompare(b)));
    writeFileSync(DURATIONS, JSON.stringify(sorted, null, 2) + "\n");
    console.log(`run-tests: durations of ${results.length} files written to scripts/test-durations.json`);
  }
  const failCount = total.fail + total.cancelled + bad.filter((r) => r.counts === undefined).length;
  console.log(`tests: ${total.pass} passed, ${failCount} failed, ${total.skipped + total.todo} skipped`);
  process.exit(bad.length > 0 ? 1 : 0);
}

await main();
