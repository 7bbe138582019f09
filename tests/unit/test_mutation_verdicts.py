"""bench/mutation.py keeps mutmut's verdicts outside the git-ignored mutants/, so that a
fresh checkout resumes a run of hours instead of starting over."""

from __future__ import annotations

import json
from pathlib import Path

from bench import mutation

META = {
    "exit_code_by_key": {"crm_mailer.leads.library.x_f__mutmut_1": 1,
                         "crm_mailer.leads.library.x_f__mutmut_2": 0,
                         "crm_mailer.leads.library.x_f__mutmut_3": None},
    "hash_by_function_name": {"x_f": "abc"},
    "type_check_error_by_key": {},
    "durations_by_key": {"crm_mailer.leads.library.x_f__mutmut_1": 3.0},
    "estimated_durations_by_key": {},
}


def write_meta(mutants: Path, meta: dict[str, object]) -> Path:
    path = mutants / "crm_mailer" / "leads" / "library.py.meta"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(meta))
    return path


def test_saved_verdicts_seed_an_empty_mutants_directory(tmp_path: Path) -> None:
    write_meta(tmp_path / "run", META)
    saved = tmp_path / "verdicts.json"
    assert mutation.save(saved, tmp_path / "run") == 2

    assert mutation.restore(saved, tmp_path / "fresh") == 2
    seeded = json.loads((tmp_path / "fresh/crm_mailer/leads/library.py.meta").read_text())
    # exactly the keys mutmut's own loader insists on, with the codes and hashes it merges
    assert set(seeded) == set(META)
    assert seeded["exit_code_by_key"] == META["exit_code_by_key"]
    assert seeded["hash_by_function_name"] == {"x_f": "abc"}
    assert mutation.results(tmp_path / "fresh") == {
        "crm_mailer.leads.library.x_f__mutmut_1": "killed",
        "crm_mailer.leads.library.x_f__mutmut_2": "survived",
        "crm_mailer.leads.library.x_f__mutmut_3": "not checked"}


def test_restore_leaves_a_run_in_progress_alone(tmp_path: Path) -> None:
    saved = tmp_path / "verdicts.json"
    write_meta(tmp_path / "old", META)
    mutation.save(saved, tmp_path / "old")
    newer = dict(META, exit_code_by_key={"crm_mailer.leads.library.x_f__mutmut_1": 0})
    meta = write_meta(tmp_path / "run", newer)

    assert mutation.restore(saved, tmp_path / "run") == 0
    assert json.loads(meta.read_text())["exit_code_by_key"] == newer["exit_code_by_key"]


def test_nothing_saved_over_the_record_when_mutants_is_empty(tmp_path: Path) -> None:
    saved = tmp_path / "verdicts.json"
    saved.write_text("{}\n")
    assert mutation.save(saved, tmp_path / "none") == 0
    assert saved.read_text() == "{}\n"
