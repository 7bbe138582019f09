"""What an import did - or, on a dry run, would do: one line per record, in a stable order."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from crm_mailer.wording import counted


class Action(enum.StrEnum):
    """What happened to a record (or, for the tallies, to how many)."""

    CREATED = "created"
    CHANGED = "changed"
    OVERWRITTEN = "overwritten"  # --overwrite replaced a value changed in the CRM
    CONFLICT = "conflict"  # the CRM's value was kept; the line says why
    INVALID = "invalid"  # broken before the import (it did not do it); fix it in the CRM
    UNCHANGED = "unchanged"
    LEFT_ALONE = "left alone"  # records the file does not name


def shown(value: Any) -> str:
    """A value as the report shows it: quoted like the file's strings, `none` for none."""
    return "none" if value is None else repr(str(value))


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One line of the report: the action, the record (none: the tenant itself or a
    tally), the field for conflicts, and the detail."""

    action: Action
    tenant: str
    record: str = ""
    field: str = ""
    detail: str = ""

    def __str__(self) -> str:
        where = ", ".join(part for part in (f"tenant '{self.tenant}'", self.record, self.field)
                          if part)
        return f"{self.action.value:<11} {where}{': ' + self.detail if self.detail else ''}"


@dataclass
class ImportReport:
    """The lines in the order they happened (file order within each kind of record), and
    counts for the summary, keyed like 'contact created', 'lead updated', 'conflict'."""

    lines: list[ReportLine] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def __bool__(self) -> bool:
        """True when the import changed something or has something to say (a conflict)."""
        return bool(self.counts)

    def add(self, line: ReportLine, count: str | None = None) -> None:
        self.lines.append(line)
        if count is not None:
            self.counts[count] += 1

    @property
    def conflicts(self) -> list[ReportLine]:
        return [line for line in self.lines if line.action is Action.CONFLICT]

    def summary(self) -> str:
        return ", ".join(counted(n, key) for key, n in sorted(self.counts.items())) \
            or "nothing changed"
