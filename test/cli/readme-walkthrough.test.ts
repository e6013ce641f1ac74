/**
 * The README's "Run it on a host" walkthrough, run literally (rd).
 *
 * The ```sh block is read from README.md at test time, so the README cannot
 * drift from what works. Each line runs in order in one bash process, inside:
 *
 *   unshare --mount --net --pid --fork   (a namespace of the test's own: the agent's "host")
 *     tmpfs over /run and /var/lib       (so /run/membrane, /var/lib/membrane and /run/netns are private;
 *                                         over the parents, so that `membrane uninstall` can remove them)
 *     PATH = a directory with `membrane` -> bin/membrane.js (what `npm link` makes)
 *
 * Between lines the harness only waits for what a line started in the
 * background to be ready (the agent's socket answers; a server listens);
 * everything the user types is the README's text. Leaving the pid namespace
 * kills whatever is left and frees every namespace the walkthrough created.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  existsSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./run-cli.js";

const skip = process.getuid?.() !== 0 ? "needs root (namespaces, nftables, mounts)" : undefined;

/** The commands of the ```sh blocks of one README section (continuation lines joined). */
export function sectionCommands(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has no "## ${heading}" section`);
  const next = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, next < 0 ? undefined : next);
  const out: string[] = [];
  for (const m of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let pending = "";
    for (const line of (m[1] ?? "").split("\n")) {
      if (line.trim() === "") continue;
      if (line.endsWith("\\")) {
        pending += line.slice(0, -1) + " ";
        continue;
      }
      out.push(pending + line);
      pending = "";
    }
  }
  return out;
}

/** `cmd & # comment` -> true: the line leaves a job running. */
function backgrounds(line: string): boolean {
  return /&\s*(#.*)?$/.test(line) && !/&&\s*(#.*)?$/.test(line);
}

/** A shell loop that waits (at most ~60 s, a safety net) until `probe` succeeds, or the job died. */
function waitFor(probe: string): string {
  return `for _ in $(seq 300); do kill -0 $! 2>/dev/null || break; ${probe} && break; sleep 0.2; done`;
}

function readinessOf(line: string): string {
  if (/^membrane agent\b/.test(line)) return waitFor("membrane get status >/dev/null 2>&1");
  const ep = /^membrane endpoint exec (\S+) --/.exec(line)?.[1];
  if (ep) return waitFor(`membrane endpoint exec ${ep} -- ss -Hltn 2>/dev/null | grep -q .`);
  return "";
}

interface Step {
  readonly line: string;
  readonly out: string;
  readonly err: string;
  readonly rc: number;
}

test(
  "rd: the README's host walkthrough works as written (agent in its own namespace, no --node-netns)",
  { skip, timeout: 300_000 },
  () => {
    const lines = sectionCommands(readFileSync(join(ROOT, "README.md"), "utf8"), "Run it on a host");
    assert.ok(lines.length >= 10, lines.join("\n"));
    const dir = mkdtempSync(join(tmpdir(), "membrane-rd-"));
    try {
      const bin = join(dir, "bin");
      mkdirSync(bin);
      symlinkSync(join(ROOT, "bin/membrane.js"), join(bin, "membrane"));
      const script = [
        "set -u",
        `cd ${JSON.stringify(ROOT)}`,
        `export PATH=${JSON.stringify(bin)}:"$PATH"`,
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        "mount -t tmpfs -o mode=0755 tmpfs /var/lib",
        ...lines.flatMap((line, i) => [
          "{",
          line,
          `} > ${dir}/${i}.out 2> ${dir}/${i}.err; echo $? > ${dir}/${i}.rc`,
          ...(backgrounds(line) ? [readinessOf(line)] : []),
        ]),
        // What is left once the walkthrough ran (uninstall is its last line).
        `{ nft list tables; ip netns list; ls -d /run/membrane /var/lib/membrane; } > ${dir}/after.out 2>&1`,
        "exit 0",
      ].join("\n");
      writeFileSync(join(dir, "walkthrough.sh"), script);
      const r = spawnSync(
        "unshare",
        [
          "--mount",
          "--propagation",
          "private",
          "--net",
          "--pid",
          "--fork",
          "--kill-child",
          "--mount-proc",
          "bash",
          join(dir, "walkthrough.sh"),
        ],
        { encoding: "utf8", timeout: 280_000 },
      );
      assert.equal(r.status, 0, `walkthrough shell: ${r.stderr}`);
      const steps: Step[] = lines.map((line, i) => {
        const read = (ext: string): string =>
          existsSync(join(dir, `${i}.${ext}`)) ? readFileSync(join(dir, `${i}.${ext}`), "utf8") : "";
        return { line, out: read("out"), err: read("err"), rc: Number(read("rc").trim() || "-1") };
      });
      const show = (s: Step): string => `$ ${s.line}\n(exit ${s.rc})\n${s.out}${s.err}`;
      const all = steps.map(show).join("\n");
      const find = (re: RegExp, n = 0): Step => {
        const s = steps.filter((x) => re.test(x.line))[n];
        assert.ok(s, `README walkthrough has no command #${n + 1} matching ${re}\n${all}`);
        return s;
      };
      const identityOf = (s: Step, name: string): string => {
        const row = s.out.split("\n").find((l) => l.split(/\s+/)[1] === name);
        assert.ok(row, `no row for ${name}:\n${show(s)}`);
        return row.split(/\s+/)[3] ?? "";
      };

      // Every step but the curls that the policy drops exits 0.
      const curl = /endpoint exec xwing -- curl/;
      for (const s of steps.filter((x) => !curl.test(x.line)))
        assert.equal(s.rc, 0, `a step failed:\n${show(s)}\n\nall steps:\n${all}`);
      assert.match(find(/endpoint create deathstar/).out, /deathstar\s.*10\.200\.0\.2\s/);
      const before = identityOf(find(/endpoint create xwing/), "xwing");

      // Server reachable without policy, dropped under sw-l3-l4, reachable once xwing is org=empire.
      const [open, dropped, relabeled] = [0, 1, 2].map((n) => find(curl, n));
      assert.ok(open && dropped && relabeled);
      assert.equal(open.rc, 0, show(open));
      assert.match(open.out, /landed/);
      assert.match(find(/^membrane apply -f/).out, /cnp\/default\/rule1/);
      assert.match(find(/^membrane get endpoints/).out, /deathstar\s.*enforced/);
      assert.notEqual(dropped.rc, 0, show(dropped));
      assert.doesNotMatch(dropped.out, /landed/);
      assert.match(
        find(/^membrane observe --verdict DROPPED/).out,
        /xwing.*-> default\/deathstar:80 .*(DENIED|Policy denied DROPPED).* by default deny/, // the verdict or its drop event
      );
      const label = find(/^membrane endpoint label xwing/);
      assert.notEqual(
        identityOf(label, "xwing"),
        before,
        `relabel did not change the identity:\n${show(label)}`,
      );
      assert.equal(relabeled.rc, 0, show(relabeled));
      assert.match(relabeled.out, /landed/);
      // The L7 version of the policy, enforced by the proxy the agent runs in its own namespace.
      assert.match(find(/^membrane apply -f/, 1).out, /cnp\/default\/rule1/);
      const [post, put] = [3, 4].map((n) => find(curl, n));
      assert.ok(post && put);
      assert.match(post.out, /landed/, show(post));
      assert.match(put.out, /Access denied/, show(put));
      assert.doesNotMatch(put.out, /landed/, show(put));
      assert.match(find(/^membrane datapath diff/).out, /in sync/);

      // uninstall said what it removed, and nothing is left.
      const un = find(/^membrane uninstall/).out;
      for (const what of [
        /removed nftables table inet membrane \(current namespace\)/,
        /removed route blackhole 10\.200\.0\.0\/24/,
        /removed network namespace mbr-/,
        /removed state directory \/var\/lib\/membrane/,
        /removed socket directory \/run\/membrane/,
      ])
        assert.match(un, what, un);
      const after = readFileSync(join(dir, "after.out"), "utf8");
      assert.doesNotMatch(after, /table inet membrane/, after);
      assert.doesNotMatch(after, /^mbr-/m, after);
      assert.match(after, /cannot access '\/run\/membrane'/, after);
      assert.match(after, /cannot access '\/var\/lib\/membrane'/, after);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
