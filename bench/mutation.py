"""Mutation testing of the rules: crm_mailer/leads, reconciliation and matching (mutmut 3).

Not run in CI: about 2,600 mutants, several hours on two shared cores. mutmut comes with
the `mutation` extra, which CI does not install:

    .venv/bin/python -m pip install -e '.[mutation]'
    .venv/bin/python bench/mutation.py [--jobs 2] [--nice 10] [--fresh]
    .venv/bin/python bench/mutation.py --sample 37      # a fifth of each function's mutants
    .venv/bin/python bench/mutation.py 'crm_mailer.leads.library.*'   # these mutants again
    .venv/bin/python bench/mutation.py --report         # the score of the last run

What is mutated and which tests run is [tool.mutmut] in pyproject.toml: mutmut copies the
project into mutants/, runs tests/unit/matching, tests/integration and tests/acceptance
once to learn which tests reach which function (bench/mutation_plugin.py adds what the
CLI's child processes reach), then for each mutant runs only those tests, fastest first,
stopping at the first failure. Before that, the screen (bench/mutation_screen.py) runs
each unchecked mutant against the in-process SQLite tests among those, in one warm
process: a mutant they catch is recorded as killed, and only the rest go to mutmut's
full run, about a hundred times slower a mutant (--no-screen skips it). One throwaway
PostgreSQL cluster (tests/pgcluster.py) serves the whole run through
CRM_MAILER_TEST_DATABASE_URL, so every mutant also meets the PostgreSQL tests, the lock
races of tests/integration/test_races.py among them; with CRM_MAILER_TEST_DATABASE_URL
already set, that server is used instead. Everything runs
under `nice` (the machine is shared).

A run resumes where the last one stopped: mutants/ keeps each verdict, and only mutants of
changed functions are tested again (--fresh starts over). mutants/ is git-ignored, so the
verdicts are also kept in bench/mutation_verdicts.json, written after every run and by
--save (commit it): a fresh checkout starts from there, and mutmut keeps each verdict
whose function's source is unchanged. --sample tests only the mutants
whose number ends in one of the given digits, the same share of every function: an
estimate when a full run does not fit. Named or sampled mutants are tested again even if
they have a verdict.

Prints killed / timeout / survived / no tests per package and in total, the survival rate
(survived and untested mutants over those checked), also after an interrupted run; then
the same after the review in bench/mutation_review.tsv, where a person records for each
survivor that a test added since kills it, why it is harmless, or that its code is gone;
then the harmless survivors with their reasons and every unreviewed survivor as a diff.
Exits 1 when the survival rate after review is over --max-survival (5%), or when a
survivor is not reviewed or a mutant not checked yet.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pgcluster import PgCluster  # noqa: E402
from tests.postfix import POSTFIX  # noqa: E402

PACKAGES = ("crm_mailer.leads", "crm_mailer.matching", "crm_mailer.reconciliation")
MUTANTS = ROOT / "mutants"
SCREEN = ROOT / "bench" / "mutation_screen.py"
NO_MUTANT = "crm_mailer.no_such_module.*"
INSTALL = "install the extra first: .venv/bin/python -m pip install -e '.[mutation]'"

# mutmut's exit codes of a mutant's test run, as the verdicts this report counts.
# A mutant is caught when a test fails (killed) or hangs (timeout); it survives when the
# tests pass, or when no test reaches its function at all (no tests).
VERDICTS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
            34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
            255: "timeout", 37: "type check", None: "not checked"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "other", "not checked")
SURVIVING = ("survived", "no tests", "other")
REVIEW = ROOT / "bench" / "mutation_review.tsv"
SAVED = ROOT / "bench" / "mutation_verdicts.json"
REVIEW_VERDICTS = ("killed", "harmless", "gone")


def mutmut_command() -> list[str]:
    """The mutmut console script of this interpreter (`python -m mutmut` re-imports itself)."""
    script = Path(sys.executable).parent / "mutmut"
    if not script.exists():
        raise SystemExit(f"mutmut is not installed in {sys.prefix}: {INSTALL}")
    return [str(script)]


def check_postfix() -> None:
    """tests/acceptance/test_postfix.py is among the tests mutmut runs clean; run as root
    without Postfix it fails, and mutmut ends twenty minutes in with "Failed to run clean
    test" and no output. Say so before starting."""
    if os.geteuid() == 0 and POSTFIX is None:
        raise SystemExit("Postfix is not installed, and the MTA test needs it: run scripts/test "
                         "once (it installs the Debian package postfix), or "
                         "apt-get install postfix")


def verdict(exit_code: int | None) -> str:
    found = VERDICTS.get(exit_code, "other")
    return found if found in COLUMNS else "other"


def results(mutants: Path = MUTANTS) -> dict[str, str]:
    """Mutant name -> verdict, from the meta files mutmut keeps beside each mutated module."""
    found: dict[str, str] = {}
    for meta in sorted(mutants.glob("crm_mailer/**/*.py.meta")):
        for name, exit_code in read_meta(meta)["exit_code_by_key"].items():
            found[name] = verdict(exit_code)
    return found


def read_meta(meta: Path) -> dict[str, Any]:
    """One meta file; mutmut rewrites them in place during a run, so a half-written one is
    read again."""
    for _ in range(50):
        try:
            return cast(dict[str, Any], json.loads(meta.read_text()))
        except json.JSONDecodeError:
            time.sleep(0.1)
    return cast(dict[str, Any], json.loads(meta.read_text()))


def save(path: Path, mutants: Path = MUTANTS) -> int:
    """Keep what a run found outside mutants/: per source file, the hash of each function
    and each mutant's exit code (null: not checked yet). Returns the number of verdicts."""
    kept: dict[str, dict[str, Any]] = {}
    for meta in sorted(mutants.glob("crm_mailer/**/*.py.meta")):
        found = read_meta(meta)
        codes = dict(sorted(found["exit_code_by_key"].items()))
        kept[str(meta.relative_to(mutants))[:-len(".meta")]] = {
            "hash_by_function_name": dict(sorted(found["hash_by_function_name"].items())),
            "exit_code_by_key": codes}
    if kept:
        path.write_text(json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
    return sum(code is not None for f in kept.values() for code in f["exit_code_by_key"].values())


def restore(path: Path, mutants: Path = MUTANTS) -> int:
    """Seed mutants/ from the saved verdicts where it has no meta file for a source file.
    mutmut, generating that file's mutants, keeps the exit codes of every function whose
    hash is unchanged and resets the rest. Returns the number of verdicts seeded."""
    if not path.exists():
        return 0
    seeded = 0
    for source, found in json.loads(path.read_text()).items():
        meta = mutants / f"{source}.meta"
        if meta.exists():
            continue
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({
            "exit_code_by_key": found["exit_code_by_key"],
            "hash_by_function_name": found["hash_by_function_name"],
            "type_check_error_by_key": {}, "durations_by_key": {},
            "estimated_durations_by_key": {}}))
        seeded += sum(code is not None for code in found["exit_code_by_key"].values())
    return seeded


def package_of(name: str) -> str:
    return next((p for p in PACKAGES if name.startswith(p + ".")), "other")


def survivors(found: dict[str, str]) -> list[str]:
    return sorted(n for n, v in found.items() if v in SURVIVING)


def survival(counts: collections.Counter[str]) -> str:
    checked = sum(counts.values()) - counts["not checked"]
    left = counts["survived"] + counts["no tests"] + counts["other"]
    return f"{100 * left / checked:.1f}%" if checked else "-"


def table(found: dict[str, str]) -> tuple[str, float]:
    """The score as a Markdown table, and the total survival rate in percent."""
    by_package: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, result in found.items():
        by_package[package_of(name)][result] += 1
        by_package["total"][result] += 1
    lines = ["| package | mutants | " + " | ".join(COLUMNS) + " | survival |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for package in (*PACKAGES, "total"):
        counts = by_package[package]
        cells = [str(counts[c]) for c in COLUMNS]
        lines.append(f"| {package} | {sum(counts.values())} | " + " | ".join(cells)
                     + f" | {survival(counts)} |")
    total = by_package["total"]
    checked = sum(total.values()) - total["not checked"]
    left = total["survived"] + total["no tests"] + total["other"]
    return "\n".join(lines), (100 * left / checked if checked else 0.0)


def diff(name: str) -> str:
    shown = subprocess.run([*mutmut_command(), "show", name], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    return shown.stdout.strip() or shown.stderr.strip()


def fingerprint(shown: str) -> str:
    """What a mutant changes, in twelve hex digits: the hash of its diff's changed lines.
    A function that changes renumbers its mutants, so a review names a mutant by its name
    and this: when the edit behind the name is another one, the review no longer holds."""
    changed = [line.strip() for line in shown.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return hashlib.sha1("\n".join(changed).encode()).hexdigest()[:12]


def load_review(path: Path) -> dict[str, tuple[str, str, str]]:
    """Mutant name -> (verdict, why, fingerprint) from the review file: one line per
    survivor that a person looked at, `name<TAB>verdict<TAB>why[<TAB>fingerprint]`, the
    verdict one of REVIEW_VERDICTS."""
    review: dict[str, tuple[str, str, str]] = {}
    if not path.exists():
        return review
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, verdict_, why, mark = [*line.split("\t", 3), "", "", ""][:4]
        if verdict_ not in REVIEW_VERDICTS:
            raise SystemExit(f"{path}:{number}: verdict must be one of "
                             f"{', '.join(REVIEW_VERDICTS)}, not {verdict_!r}")
        review[name] = (verdict_, why, mark)
    return review


def still_holding(review: dict[str, tuple[str, str, str]],
                  names: Iterable[str]) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """The review without the entries of `names` whose mutant is now another edit than the
    one reviewed, and those names."""
    kept, changed = dict(review), []
    for name in names:
        mark = review.get(name, ("", "", ""))[2]
        if mark and mark != fingerprint(diff(name)):
            del kept[name]
            changed.append(name)
    return kept, changed


def add_fingerprints(path: Path, names: set[str]) -> int:
    """Write the current fingerprint into the review lines of `names` that have none."""
    lines, added = path.read_text().splitlines(), 0
    for index, line in enumerate(lines):
        fields = line.split("\t")
        if line.startswith("#") or len(fields) != 3 or fields[0] not in names:
            continue
        lines[index] = "\t".join([*fields, fingerprint(diff(fields[0]))])
        added += 1
    path.write_text("\n".join(lines) + "\n")
    return added


def after_review(found: dict[str, str],
                 review: dict[str, tuple[str, str, str]]) -> dict[str, str]:
    """The verdicts with the review applied: a survivor a later test kills counts as
    killed; one whose code changed since (gone) no longer counts; a harmless one survives."""
    applied: dict[str, str] = {}
    for name, result in found.items():
        reviewed = review.get(name, ("", ""))[0] if result in SURVIVING else ""
        if reviewed == "gone":
            continue
        applied[name] = "killed" if reviewed == "killed" else result
    return applied


def report(found: dict[str, str], max_survival: float, review_file: Path) -> int:
    if not found:
        print("no results in mutants/: run bench/mutation.py first", file=sys.stderr)
        return 2
    text, rate = table(found)
    print("\nAs measured:\n")
    print(text)
    review, changed = still_holding(
        load_review(review_file), (n for n, result in found.items() if result in SURVIVING))
    applied = after_review(found, review)
    text, rate = table(applied)
    print(f"\nAfter the review in {review_file.relative_to(ROOT)} (survivors a later test "
          "kills count as killed):\n")
    print(text)
    left = survivors(applied)
    harmless = [n for n in left if n in review]
    unreviewed = [n for n in left if n not in review]
    if harmless:
        print(f"\n{len(harmless)} harmless survivor(s):")
        for name in harmless:
            print(f"- {name}: {review[name][1]}")
    claimed = sorted(n for n, result in found.items()
                     if result in SURVIVING and review.get(n, ("",))[0] == "killed")
    if claimed:
        print(f"\n{len(claimed)} survivor(s) reviewed as killed by a test added since their "
              "run; confirm with `bench/mutation.py NAME...` after changing tests:")
        for name in claimed:
            print(f"- {name}: {review[name][1]}")
    unmarked = [n for n in harmless if not review[n][2]]
    if unmarked:
        print(f"\n{len(unmarked)} harmless survivor(s) reviewed without a fingerprint: check "
              "that each reason still fits its diff (`mutmut show NAME`), then run "
              "--fingerprint")
        for name in unmarked:
            print(f"- {name}")
    if changed:
        print(f"\n{len(changed)} survivor(s) whose review was of another edit (their "
              f"function changed since): {', '.join(changed)}")
    if unreviewed:
        print(f"\n{len(unreviewed)} survivor(s) not reviewed yet:")
    for name in unreviewed:
        print(f"\n## {name} ({applied[name]})\n{diff(name)}")
    print(f"\nsurvival rate after review {rate:.1f}% (at most {max_survival:g}% allowed)")
    unchecked = sum(1 for result in applied.values() if result == "not checked")
    if unchecked:
        print(f"partial: {unchecked} mutant(s) not checked yet")
    return 0 if rate <= max_survival and not unreviewed and not unchecked else 1


def run(mutants: Iterable[str], jobs: int, screen: bool, screen_tests: int = 40,
        screen_only: bool = False) -> int:
    """`mutmut run` against one throwaway PostgreSQL cluster, started unless one is given;
    with `screen`, the fast tests see every unchecked mutant first (bench/mutation_screen.py)."""
    check_postfix()
    env = dict(os.environ)
    cluster = None
    if not env.get("CRM_MAILER_TEST_DATABASE_URL"):
        cluster = PgCluster()
        cluster.start()
        env["CRM_MAILER_TEST_DATABASE_URL"] = cluster.url
        print(f"PostgreSQL for the whole run: {cluster.url}", flush=True)
    mutmut = [*mutmut_command(), "run", "--max-children", str(jobs)]
    try:
        if screen:
            # Named after no mutant, mutmut generates the mutants, learns which tests reach
            # which function (or loads what it learnt), then stops at its assertion that
            # nothing matches: any other end is a real failure.
            print("mutmut: generating mutants and learning which tests reach them "
                  "(the first time about 20 minutes)", flush=True)
            prepared = subprocess.run([*mutmut, NO_MUTANT], cwd=ROOT, env=env, check=False,
                                      capture_output=True, text=True)
            if "nothing matches" not in prepared.stdout + prepared.stderr:
                print(prepared.stdout[-5000:], prepared.stderr[-5000:], file=sys.stderr)
                return prepared.returncode or 1
            code = subprocess.run([sys.executable, str(SCREEN), str(MUTANTS),
                                   "--jobs", str(jobs), "--max-tests", str(screen_tests)],
                                  cwd=ROOT, env=env, check=False).returncode
            if code or screen_only:
                return code
        return subprocess.run([*mutmut, *mutants], cwd=ROOT, env=env, check=False).returncode
    finally:
        if cluster is not None:
            cluster.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mutants", nargs="*",
                        help="only these mutants (names or globs, as `mutmut results` prints "
                             "them), tested again even if they have a verdict")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of the run and its PostgreSQL (default 10)")
    parser.add_argument("--fresh", action="store_true", help="delete mutants/ and start over")
    parser.add_argument("--no-screen", action="store_true",
                        help="leave every mutant to mutmut's full run, without the screen "
                             "of the fast tests first")
    parser.add_argument("--screen-tests", type=int, default=40, metavar="N",
                        help="the screen runs the fastest N in-process tests of a mutant "
                             "(default 40); with few mutants left, 1000 catches more of them "
                             "in a minute than mutmut does in an hour")
    parser.add_argument("--screen-only", action="store_true",
                        help="stop after the screen: mutmut's full run is left for later")
    parser.add_argument("--sample", metavar="DIGITS", default="",
                        help="only the mutants whose number ends in one of these digits")
    parser.add_argument("--save", action="store_true",
                        help="only write the verdicts in mutants/ to bench/mutation_verdicts."
                             "json (also while a run goes on; a run writes it when it ends)")
    parser.add_argument("--report", action="store_true",
                        help="only print the score of the results in mutants/")
    parser.add_argument("--max-survival", type=float, default=5.0,
                        help="exit 1 above this survival rate after review, in percent "
                             "(default 5), or with survivors not reviewed yet")
    parser.add_argument("--review", type=Path, default=REVIEW,
                        help="the review of survivors (default bench/mutation_review.tsv)")
    parser.add_argument("--fingerprint", action="store_true",
                        help="after checking the reviewed survivors' reasons against their "
                             "diffs: record what each mutant changes in the review file, so "
                             "that a later renumbering cannot carry a review to another edit")
    args = parser.parse_args()
    if args.fingerprint:
        surviving = {n for n, result in results().items() if result in SURVIVING}
        added = add_fingerprints(args.review.resolve(), surviving)
        print(f"fingerprinted {added} review line(s)")
        return 0
    if args.save:
        print(f"saved {save(SAVED)} verdict(s) to {SAVED.relative_to(ROOT)}")
        return 0

    if not set(args.sample) <= set("0123456789"):
        parser.error("--sample takes digits, e.g. 37")
    code = 0
    if args.fresh and not args.report:
        shutil.rmtree(MUTANTS, ignore_errors=True)
    else:
        seeded = restore(SAVED)
        if seeded:
            print(f"seeded {seeded} verdict(s) from {SAVED.relative_to(ROOT)}", flush=True)
    if not args.report:
        os.nice(args.nice)
        sample = [f"*__mutmut_*{digit}" for digit in sorted(set(args.sample))]
        named = [*args.mutants, *sample]
        try:
            code = run(named, args.jobs, screen=not (args.no_screen or named),
                       screen_tests=args.screen_tests, screen_only=args.screen_only)
        finally:
            print(f"saved {save(SAVED)} verdict(s) to {SAVED.relative_to(ROOT)}")
        if code:
            print(f"mutmut run exited with {code}; the score so far:", file=sys.stderr)
    return report(results(), args.max_survival, args.review.resolve()) or code


if __name__ == "__main__":
    sys.exit(main())
