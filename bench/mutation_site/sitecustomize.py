"""bench/mutation.py: a test's child process reports the mutated functions it reached.

Loaded by any Python started with this directory on PYTHONPATH (bench/mutation_plugin.py
puts it there during a mutmut run). It does something only while mutmut records which
tests reach which function (MUTANT_UNDER_TEST=stats), and then only at exit.
"""

from __future__ import annotations

import atexit
import os

HITS = os.environ.get("MUTATION_CHILD_HITS")


def report_hits() -> None:
    """Write the mutated functions this process called, one per line, to HITS/<pid>."""
    try:
        from mutmut.state import state
    except ImportError:
        return
    if HITS and state()._stats:
        with open(os.path.join(HITS, str(os.getpid())), "w") as file:
            file.write("\n".join(sorted(state()._stats)))


if HITS and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    atexit.register(report_hits)
