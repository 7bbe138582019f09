"""The one rule for a field a re-import names: the file's value, the CRM's value now, and
the file's value as last imported decide what is stored (pure; no I/O).

- the file and the CRM agree: nothing to do;
- the value breaks a rule of the library: the CRM's value stays, reported as a conflict;
- the CRM still holds what the file said last time: the file's value is stored;
- otherwise the CRM's value was changed since (or never imported): it stays and the
  conflict is reported - unless --overwrite, which stores the file's value.

A conflict is reported again on every import until the file carries the CRM's value or
--overwrite is given: the record remembers the file's value as last imported either way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crm_mailer.directory.report import Action, ImportReport, ReportLine, shown


class Never(enum.Enum):
    """No value was ever imported into this field: the CRM set it."""

    NEVER = "never"


NEVER = Never.NEVER
_OWN: Any = object()  # `last` not given: the record's own last imported value
CHANGED_IN_CRM = "changed in the CRM since the last import"
NEVER_IMPORTED = "set in the CRM, never imported"


class Verdict(enum.Enum):
    SAME = "same"
    APPLIED = "applied"
    OVERWRITTEN = "overwritten"
    KEPT = "kept"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a field gets: `value` to store, why, and both sides for the report."""

    verdict: Verdict
    value: Any
    file: Any
    current: Any
    reason: str = ""


def decide(file: Any, current: Any, last_imported: Any, *, overwrite: bool,
           refusal: str | None = None) -> Decision:
    """The rule above for one field; `refusal` is the library's reason to refuse `file`."""
    if file == current:
        return Decision(Verdict.SAME, current, file, current)
    if refusal is not None:
        return Decision(Verdict.KEPT, current, file, current, refusal)
    if last_imported is not NEVER and last_imported == current:
        return Decision(Verdict.APPLIED, file, file, current)
    if overwrite:
        return Decision(Verdict.OVERWRITTEN, file, file, current)
    reason = NEVER_IMPORTED if last_imported is NEVER else CHANGED_IN_CRM
    return Decision(Verdict.KEPT, current, file, current, reason)


class RecordMerge:
    """The fields of one record that exists already, merged one by one, then reported."""

    def __init__(self, tenant: str, record: str, imported: Mapping[str, Any] | None, *,
                 overwrite: bool) -> None:
        self.tenant, self.record, self.overwrite = tenant, record, overwrite
        self.imported = imported
        self.decisions: dict[str, Decision] = {}
        self.replaced: list[str] = []  # lists the file replaces whole (a company's domains)

    def last(self, name: str, current: Any) -> Any:
        """The file's value as last imported; records from before 0005 ({}) count as
        imported as they are now."""
        if self.imported is None:
            return NEVER
        return self.imported.get(name, current)

    def field(self, name: str, file: Any, current: Any, *, last: Any = _OWN,
              refusal: str | None = None) -> Any:
        """Decide one field and return the value to store (`last`: if not the record's own)."""
        last_imported = self.last(name, current) if last is _OWN else last
        decision = decide(file, current, last_imported, overwrite=self.overwrite,
                          refusal=refusal)
        self.decisions[name] = decision
        return decision.value

    def keep(self, name: str, reason: str) -> None:
        """Keep the CRM's value after all, where the file's was to be stored."""
        decision = self.decisions[name]
        if decision.verdict in (Verdict.APPLIED, Verdict.OVERWRITTEN):
            self.decisions[name] = Decision(Verdict.KEPT, decision.current, decision.file,
                                            decision.current, reason)

    @property
    def changed(self) -> list[str]:
        return [name for name, d in self.decisions.items()
                if d.verdict in (Verdict.APPLIED, Verdict.OVERWRITTEN)] + self.replaced

    def report(self, report: ImportReport, kind: str) -> bool:
        """Add this record's lines; True if it is unchanged and without conflicts."""
        if self.changed:
            report.add(ReportLine(Action.CHANGED, self.tenant, self.record,
                                  detail=", ".join(self.changed)), f"{kind} updated")
        for name, d in self.decisions.items():
            if d.verdict is Verdict.OVERWRITTEN:
                report.add(ReportLine(Action.OVERWRITTEN, self.tenant, self.record, name,
                                      f"imported {shown(d.file)}, was {shown(d.current)}"),
                           "overwritten")
            elif d.verdict is Verdict.KEPT:
                report.add(ReportLine(Action.CONFLICT, self.tenant, self.record, name,
                                      f"imported {shown(d.file)}, current {shown(d.current)}; "
                                      f"kept: {d.reason}"), "conflict")
        return all(d.verdict is Verdict.SAME for d in self.decisions.values()) \
            and not self.replaced
