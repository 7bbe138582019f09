"""The re-import rule for one field: the file's value, the CRM's and the last imported one."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mailer.directory.merge import (
    CHANGED_IN_CRM,
    NEVER,
    NEVER_IMPORTED,
    RecordMerge,
    Ref,
    Verdict,
    arranged,
    common_order,
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


def test_a_field_only_the_file_sets_always_follows_it() -> None:
    merge = RecordMerge("xyz", "", {"name": "old"}, overwrite=False)
    assert merge.follow("name", "XYZ AG", "XYZ GmbH") == "XYZ AG"
    assert merge.decisions["name"].verdict is Verdict.APPLIED


def test_a_ref_compares_what_it_refers_to_and_shows_its_label() -> None:
    """A status the file knows as 'Erstkontakt' is the one the CRM renamed 'Neu'."""
    decision = decide(Ref(1, "Erstkontakt"), Ref(1, "Neu"), Ref(2, "Gewonnen"), overwrite=False)
    assert decision.verdict is Verdict.SAME
    merge = RecordMerge("xyz", "lead 1", {"status": "Gewonnen"}, overwrite=False)
    merge.field("status", Ref(2, "Gewonnen"), Ref(1, "Neu"), last=Ref(2, "Gewonnen"))
    report = ImportReport()
    merge.report(report, "lead")
    assert [str(line) for line in report.lines] == [
        "conflict    tenant 'xyz', lead 1, status: imported 'Gewonnen', current 'Neu'; "
        f"kept: {CHANGED_IN_CRM}"]


@pytest.mark.parametrize("file, current, last, expected", [
    # A status added in the CRM (D) or only in the file (E) is no change of order.
    ("ABCE", "ADBC", "ABC", ("ABC", "ABC", "ABC")),
    # One deleted in the CRM (B) drops out of all three.
    ("ABC", "CA", "ABC", ("AC", "CA", "AC")),
    ("CBA", "ABC", NEVER, ("CBA", "ABC", NEVER)),
])
def test_orders_are_compared_on_what_both_sides_hold(file: str, current: str, last: Any,
                                                     expected: tuple[Any, ...]) -> None:
    orders = common_order(list(file), list(current), last if last is NEVER else list(last))
    assert orders == tuple(o if o is NEVER else tuple(o) for o in expected)


@pytest.mark.parametrize("current, file, follow_file, expected", [
    ("ABC", "CBA", True, "CBA"),
    ("ABC", "CBA", False, "ABC"),
    # What only the CRM holds (D) keeps its place; the file orders the rest around it.
    ("ADBC", "CBA", True, "CDBA"),
    # New in the file: after what precedes it there, or first.
    ("ABC", "AEBC", True, "AEBC"),
    ("ADBC", "AEBC", False, "AEDBC"),
    ("ABC", "EABC", True, "EABC"),
    ("CBA", "ABCE", False, "CBAE"),
    ("", "AB", True, "AB"),
])
def test_statuses_take_the_files_order_in_the_places_they_hold(
        current: str, file: str, follow_file: bool, expected: str) -> None:
    assert "".join(arranged(list(current), list(file), follow_file=follow_file)) == expected
