"""The screen of bench/mutation.py: mutants that the fast tests already catch.

mutmut runs each mutant against every test that reaches its function, the PostgreSQL
and CLI tests included, in a fresh pytest session that builds its database templates
again: about 12 s a mutant on this machine, 10 hours for the whole run. Most mutants fail
the first fast test that reaches them. The screen imports the mutated code and the tests
once, then forks one child per mutant that runs only the in-process tests among those
mutmut chose for it (SQLite only, no acceptance test), at most the fastest MAX_TESTS,
fastest first, stopping at the first failure.

A mutant whose test fails is recorded as killed, exactly as mutmut records it. Any other
outcome (the tests pass, hang or crash) leaves the mutant unchecked for mutmut's full
run, so the screen can save time but never hide a survivor. It runs only when the
selected tests pass without a mutant, and never while `mutmut run` runs: both write the
verdicts in mutants/.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KILLED = 1  # mutmut's exit code for a mutant a test caught
# A mutant most tests catch fails one of the first few; one that passes them all would run
# hundreds here before mutmut runs them again. Past this many, it is mutmut's.
MAX_TESTS = 40

# Tests the screen leaves to mutmut: the CLI's child processes, and the PostgreSQL run
# of a test (its SQLite run is screened).
SLOW = ("tests/acceptance/", "[postgresql")


@dataclass(frozen=True)
class Mutant:
    name: str  # as the meta file keys it
    meta: Path
    tests: tuple[str, ...]

    @property
    def switch(self) -> str:
        """The name that turns the mutant on, as mutmut passes it to the trampolines."""
        return self.name.replace("__init__.", "")


def fast_tests(tests: list[str], duration: dict[str, float],
               limit: int = MAX_TESTS) -> tuple[str, ...]:
    """The `limit` fastest in-process SQLite tests among `tests` (mutmut's order)."""
    chosen = [t for t in tests if not any(mark in t for mark in SLOW)]
    return tuple(sorted(chosen, key=lambda t: (duration.get(t, 0.0), t))[:limit])


def unchecked(mutants_dir: Path, limit: int = MAX_TESTS) -> Iterator[Mutant]:
    """Every mutant without a verdict yet, with the fast tests that reach its function."""
    stats = json.loads((mutants_dir / "mutmut-stats.json").read_text())
    by_function: dict[str, list[str]] = stats["tests_by_mangled_function_name"]
    duration: dict[str, float] = stats["duration_by_test"]
    for meta in sorted(mutants_dir.glob("crm_mailer/**/*.py.meta")):
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if exit_code is not None:
                continue
            function = Mutant(name, meta, ()).switch.partition("__mutmut_")[0]
            tests = fast_tests(by_function.get(function, []), duration, limit)
            if tests:
                yield Mutant(name, meta, tests)


def record_killed(killed: list[Mutant]) -> None:
    """Write the verdicts into mutmut's meta files, one read and write per file."""
    by_meta: dict[Path, list[str]] = {}
    for mutant in killed:
        by_meta.setdefault(mutant.meta, []).append(mutant.name)
    for meta, names in by_meta.items():
        data = json.loads(meta.read_text())
        for name in names:
            data["exit_code_by_key"][name] = KILLED
        meta.write_text(json.dumps(data, indent=4))


def _pytest(tests: tuple[str, ...], mutant: str, timeout: int) -> int:
    """In a forked child: run `tests` against `mutant` ("" for none) and exit with pytest's
    code. The child's output goes to /dev/null; only the code matters."""
    import pytest

    os.environ["MUTANT_UNDER_TEST"] = mutant
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return int(pytest.main(["--rootdir=.", "-x", "-q", "-p", "no:cacheprovider",
                            "-p", "no:randomly", f"--timeout={timeout}", *tests]))


def _fork(tests: tuple[str, ...], mutant: str, timeout: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = _pytest(tests, mutant, timeout)
        finally:
            os._exit(code)
    return pid


Running = dict[int, tuple[Mutant | None, float]]  # child pid -> (its mutant, when it started)


def _wait(running: Running, limit: float) -> tuple[Mutant | None, int]:
    """The next child to end, as (its mutant, its exit code); one over `limit` seconds is
    killed, which leaves its mutant to mutmut."""
    while True:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            mutant, _ = running.pop(pid)
            return mutant, os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        for child, (_, started) in list(running.items()):
            if now - started > limit:
                os.kill(child, signal.SIGKILL)
        time.sleep(0.02)


def screen(mutants_dir: Path, jobs: int, timeout: int,
           limit: int = MAX_TESTS) -> tuple[int, int]:
    """Screen every unchecked mutant; returns (screened, killed). Runs in mutants/, on the
    mutated copy of the code, as mutmut's own runs do."""
    os.chdir(mutants_dir)
    sys.path.insert(0, str(mutants_dir))
    mutants = list(unchecked(mutants_dir, limit))
    if not mutants:
        return 0, 0
    every_test = tuple(sorted({t for m in mutants for t in m.tests}))
    print(f"screen: {len(mutants)} unchecked mutant(s); clean run of their "
          f"{len(every_test)} fast test(s)", flush=True)
    # Import the code and the tests once, so that each child starts warm.
    import pytest

    os.environ["MUTANT_UNDER_TEST"] = ""
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(["--rootdir=.", "--collect-only", "-qqq", "-p", "no:cacheprovider",
                     *every_test])
    # Without a mutant the selection must pass: otherwise a failure is not the mutant's.
    running: Running = {
        _fork(every_test, "", timeout): (None, time.monotonic())}
    _, code = _wait(running, limit=3600)
    if code != 0:
        raise SystemExit(f"screen: the fast tests fail without a mutant (pytest exit {code}); "
                         f"run them in {mutants_dir} to see why")
    killed: list[Mutant] = []
    total_killed = done = 0
    started = time.monotonic()
    pending = iter(mutants)
    while True:
        while len(running) < jobs and (mutant := next(pending, None)) is not None:
            running[_fork(mutant.tests, mutant.switch, timeout)] = (mutant, time.monotonic())
        if not running:
            break
        # A child may run `limit` tests: it gets the time of four slow ones, or of all.
        ended, code = _wait(running, limit=timeout * max(4, limit // 10))
        done += 1
        if ended is not None and code == KILLED:
            killed.append(ended)
            total_killed += 1
        if len(killed) >= 50 or not running:
            record_killed(killed)  # as it goes, so that an interrupted screen keeps its work
            killed.clear()
        if done % 50 == 0 or done == len(mutants):
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"screen: {done}/{len(mutants)} screened, {total_killed} killed, "
                  f"{rate:.1f} a second", flush=True)
    record_killed(killed)
    return len(mutants), total_killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mutants_dir", type=Path, help="mutmut's mutants/ directory")
    parser.add_argument("--jobs", type=int, default=2, help="mutants screened at once")
    parser.add_argument("--timeout", type=int, default=20,
                        help="seconds a test may take (pytest-timeout); a child over four "
                             "times that is stopped and its mutant left to mutmut")
    parser.add_argument("--max-tests", type=int, default=MAX_TESTS,
                        help="the fastest this many in-process SQLite tests run for each "
                             f"mutant (default {MAX_TESTS}); more screen the mutants left "
                             "after a run more closely, at the cost of time for survivors")
    args = parser.parse_args()
    if not (args.mutants_dir / "mutmut-stats.json").exists():
        parser.error(f"{args.mutants_dir} holds no mutmut-stats.json: mutmut has not "
                     "collected which tests reach which function yet")
    screened, killed = screen(args.mutants_dir.resolve(), args.jobs, args.timeout,
                              args.max_tests)
    print(f"screen: {killed} of {screened} mutant(s) killed by the fast tests; "
          "the rest are left to mutmut")
    return 0


if __name__ == "__main__":
    sys.exit(main())
