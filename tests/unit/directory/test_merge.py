"""The re-import rule for one field: the file's value, the CRM's and the last imported one."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mailer.directory.merge import (
    CHANGED_IN_CRM,
    NEVER,
    NEVER_IMPORTED,
    RecordMerge,
    Verdict,
    decide,
)
from crm_mailer.directory.report import ImportReport


@pytest.mark.parametrize("file, current, last, overwrite, verdict, stored, reason", [
    ("a", "a", "x", False, Verdict.SAME, "a", ""),  # agree: nothing to do
    ("b", "a", "a", False, Verdict.APPLIED, "b", ""),  # changed in the file only
    ("b", "c", "a", False, Verdict.KEPT, "c", CHANGED_IN_CRM),  # changed on both sides
    ("a", "c", "a", False, Verdict.KEPT, "c", CHANGED_IN_CRM),  # changed in the CRM only
    ("b", "c", "a", True, Verdict.OVERWRITTEN, "b", ""),
    ("b", "c", NEVER, False, Verdict.KEPT, "c", NEVER_IMPORTED),
    (None, "c", None, False, Verdict.KEPT, "c", CHANGED_IN_CRM),  # a month added in the CRM
    ("b", None, None, False, Verdict.APPLIED, "b", ""),  # a month added in the file
])
def test_one_field(file: Any, current: Any, last: Any, overwrite: bool, verdict: Verdict,
                   stored: Any, reason: str) -> None:
    decision = decide(file, current, last, overwrite=overwrite)
    assert (decision.verdict, decision.value, decision.reason) == (verdict, stored, reason)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_value_the_library_refuses_is_never_stored(overwrite: bool) -> None:
    decision = decide("open", "won", "won", overwrite=overwrite, refusal="it must stay won")
    assert (decision.verdict, decision.value, decision.reason) == (Verdict.KEPT, "won",
                                                                   "it must stay won")


def test_a_record_from_before_baselines_counts_as_imported_as_it_is() -> None:
    merge = RecordMerge("xyz", "lead 1", {}, overwrite=False)
    assert merge.field("name", "file", "crm") == "file"
    never = RecordMerge("xyz", "lead 1", None, overwrite=False)
    assert never.field("name", "file", "crm") == "crm"


def test_a_record_reports_changes_then_conflicts() -> None:
    merge = RecordMerge("xyz", "lead 1", {"name": "a", "status": "Neu"}, overwrite=False)
    merge.field("name", "b", "a")
    merge.field("status", "Neu", "Gewonnen")
    report = ImportReport()
    assert merge.report(report, "lead") is False
    assert [str(line) for line in report.lines] == [
        "changed     tenant 'xyz', lead 1: name",
        "conflict    tenant 'xyz', lead 1, status: imported 'Neu', current 'Gewonnen'; "
        f"kept: {CHANGED_IN_CRM}"]
    assert report.counts == {"lead updated": 1, "conflict": 1}
