"""Each tenant copy's outcome is counted under the label operators see; machine mail that
was not kept (discarded) counts as ignored, as the issue's list of outcomes names it."""

from __future__ import annotations

import pytest

from crm_mailer import metrics
from crm_mailer.ingest import Outcome


def count(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("crm_mailer_messages_total",
                                             {"outcome": outcome}) or 0.0


@pytest.mark.parametrize(("outcome", "label"), [
    *((o.value, o.value) for o in Outcome if o is not Outcome.DISCARDED),
    (Outcome.DISCARDED.value, "ignored"),
])
def test_every_outcome_is_counted_under_its_label(outcome: str, label: str) -> None:
    before = count(label)
    metrics.record_outcome(outcome)
    assert count(label) == before + 1
    assert label in metrics.OUTCOMES


def test_a_reply_is_counted_by_command_and_code() -> None:
    sample = {"command": "DATA", "code": "451"}
    before = metrics.REGISTRY.get_sample_value("crm_mailer_replies_total", sample) or 0.0
    metrics.record_reply("DATA", "451 4.3.0 Storage is unavailable; try again later")
    assert metrics.REGISTRY.get_sample_value("crm_mailer_replies_total", sample) == before + 1
