"""bench/throughput.py judges issue 10's targets from its own rows: the verdicts it prints
must follow the figures, not read "met" where a row misses."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.throughput import Bench, goals

ONE, TWO, FEW = "one", "two", "few"


def bench(rates: dict[str, tuple[float, float]], p99: float = 20.0,
          cpu: float = 1.0) -> Bench:
    measured = Bench(argparse.Namespace(), Path("."), {})
    for name, (new, reuse) in rates.items():
        for mode, rate in (("new", new), ("reuse", reuse)):
            row = measured.row(name, mode)
            row.rates.append(rate)
            row.p99, row.daemon_ms = p99, (0.5 if name.startswith("bare") else cpu)
    return measured


GOOD = {"bare aiosmtpd (ceiling)": (1000, 1500), ONE: (600, 800), TWO: (1000, 1300),
        FEW: (620, 820)}


def verdicts(lines: list[str]) -> list[str]:
    return ["NOT MET" if line.endswith("NOT MET") else "met" for line in lines]


def test_every_target_met_reads_met() -> None:
    lines = goals(bench(GOOD), ONE, TWO, FEW, (100.0, 80.0))
    assert verdicts(lines) == ["met"] * 6
    assert "new 0.60x, reuse 0.53x" in lines[0]
    assert "(bare server 0.50)" in lines[5]


def test_each_target_missed_reads_not_met() -> None:
    slow = dict(GOOD, **{ONE: (400, 800), TWO: (1000, 1000), FEW: (500, 820)})
    lines = goals(bench(slow, p99=25.1, cpu=1.6), ONE, TWO, FEW, (121.0, 80.0))
    assert verdicts(lines) == ["NOT MET"] * 6
    assert "new 0.40x" in lines[0] and "reuse 1.25x" in lines[1]
    assert "worst row 25.1 ms" in lines[2] and "new -20%" in lines[3]


def test_a_reimport_slower_than_the_import_misses() -> None:
    lines = goals(bench(GOOD), ONE, TWO, FEW, (100.0, 101.0))
    assert verdicts(lines)[4] == "NOT MET"


def test_missing_rows_are_said_not_judged() -> None:
    partial = bench({k: v for k, v in GOOD.items() if k != TWO})
    assert goals(partial, ONE, TWO, FEW, (1.0, 1.0)) == ["targets: not every row was measured"]
