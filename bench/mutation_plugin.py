"""pytest plugin of bench/mutation.py: a test also reaches what its child processes reach.

mutmut learns which tests reach which mutated function by recording calls in the test's
own process, then runs only those tests against each mutant. The acceptance tests run
`python -m crm_mailer` in a child process, from mutants/ and so on the mutated code, but
what a child calls is lost with it: without this plugin those tests would never be chosen,
and a mutant only they catch would count as untested. mutation_site/sitecustomize.py makes
each child write what it called to a directory; this plugin adds that to the test's record
before mutmut reads it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

HITS = "MUTATION_CHILD_HITS"  # not CRM_MAILER_*: tests/acceptance/test_cli.py drops those
SITE = str(Path(__file__).resolve().with_name("mutation_site"))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    os.environ.setdefault(HITS, tempfile.mkdtemp(prefix="crm-mailer-mutation-hits-"))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if SITE not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([SITE, *paths])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Before mutmut's own teardown hook files the test's calls, add its children's."""
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or HITS not in os.environ:
        return
    from mutmut.state import state

    for report in Path(os.environ[HITS]).iterdir():
        state()._stats.update(report.read_text().split())
        report.unlink()


# mutmut runs the stats and clean runs in its fork server and drops their output when one
# fails ("Failed to run clean test", nothing else): each failure of those runs is appended
# here, to be read after the fact.
FAILURES = Path(tempfile.gettempdir()) / "crm-mailer-mutation-failures.log"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    under_test = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" in under_test or under_test == "fail" or not report.failed:
        return  # a mutant's run, or the forced failure: failing is what they are for
    with FAILURES.open("a") as log:
        log.write(f"=== {under_test!r} {report.nodeid} ({report.when})\n")
        log.write(f"{report.longreprtext}\n")
