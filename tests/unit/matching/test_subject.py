"""Reply/forward prefixes and whole-word name matching (issue 9, rule 3)."""

from __future__ import annotations

import pytest

from crm_mailer.matching.subject import (
    contains_words,
    name_key,
    strip_prefixes,
    word_runs,
    words,
)


@pytest.mark.parametrize("subject", [
    "Re: Angebot", "AW: Angebot", "WG: Angebot", "Fwd: Angebot", "FW: Angebot",
    "SV: Angebot", "VS: Angebot", "Antw: Angebot", "RE[2]: Angebot", "Re^3: Angebot",
    "[EXT] Angebot", "AW: WG: Re: Angebot", "[EXT] AW: [Extern] RE[2]: Fwd:FW: Angebot",
    "re : Angebot", "AW：Angebot", "  aw:   Angebot  ",
])
def test_reply_and_forward_prefixes_in_any_order_and_repetition_come_off(subject: str) -> None:
    assert strip_prefixes(subject) == "Angebot"


@pytest.mark.parametrize("subject", ["Antwort: Angebot", "Rework: Angebot", "Angebot AW: x",
                                     "[not closed Angebot"])
def test_words_that_only_look_like_prefixes_stay(subject: str) -> None:
    assert strip_prefixes(subject) == subject


def test_words_are_casefolded_and_keep_their_hyphens() -> None:
    assert words("STRASSE Website-Relaunch, (Phase‑2) Müller") == (
        "strasse", "website-relaunch", "phase-2", "müller")
    assert name_key("Straße") == name_key("STRASSE") == "strasse"


def test_a_name_keeps_every_word_past_a_subjects_sixty() -> None:
    longest = " ".join("w" * 128)  # 255 characters, a lead's longest name: 128 words
    assert name_key(longest).split() == ["w"] * 128


@pytest.mark.parametrize("subject, name, found", [
    ("AW: Angebot Website-Relaunch 2027", "Website-Relaunch", True),
    ("Angebot website-relaunch", "Website-Relaunch", True),
    ("Angebot Website Relaunch", "Website-Relaunch", False),  # the hyphen is part of the word
    ("Wartungsvertragsende", "Wartung", False),                # never inside a longer word
    ("Wartungs-Vertrag", "Wartung", False),
    ("Neue Wartung für 2027", "Wartung 2027", False),          # the whole name, in order
    ("Die Wartung 2027 beginnt", "Wartung 2027", True),
])
def test_a_name_counts_only_as_whole_words(subject: str, name: str, found: bool) -> None:
    assert contains_words(words(subject), tuple(name_key(name).split())) is found


def test_word_runs_give_every_name_a_subject_can_carry() -> None:
    assert word_runs(("a", "b", "c"), 2) == ["a", "b", "c", "a b", "b c"]


def test_hostile_subjects_stay_linear() -> None:
    assert words("a" + "-" * 200_000 + " b") == ("a", "b")
    assert strip_prefixes("Re:" * 100_000 + "x") == "x"
    assert len(words("x " * 100_000)) == 60
