"""The pipeline chart (`pipeline --format chart`): bars scaled to the largest volume."""

from __future__ import annotations

from decimal import Decimal

from crm_mailer.db.models import StatusKind
from crm_mailer.leads.pipeline_sums import PipelineRow, render_chart


def row(status: str, leads: int, volume: str) -> PipelineRow:
    return PipelineRow(status, StatusKind.OPEN, leads, Decimal(volume))


def test_no_statuses_is_said_in_words() -> None:
    assert render_chart([]) == "(no statuses)\n"


def test_bars_are_scaled_to_the_largest_volume_and_a_small_one_still_shows() -> None:
    chart = render_chart([row("Angebot", 2, "1000.00"), row("Erstkontakt", 1, "0.01"),
                          row("Leer", 0, "0")], width=10)
    assert chart == (
        "Angebot      ██████████  1,000.00  (2 leads)\n"
        "Erstkontakt  █·········      0.01  (1 lead)\n"
        "Leer         ··········      0.00  (0 leads)\n"
        "total                    1,000.01  (3 leads)\n")


def test_only_empty_statuses_draw_no_bars() -> None:
    assert render_chart([row("Neu", 0, "0")], width=4) == (
        "Neu    ····  0.00  (0 leads)\n"
        "total        0.00  (0 leads)\n")
