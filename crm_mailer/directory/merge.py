"""The one rule for a field a re-import names: the file's value, the CRM's value now, and
the file's value as last imported decide what is stored (pure; no I/O).

- the file and the CRM agree: nothing to do;
- the value breaks a rule of the library: the CRM's value stays, reported as a conflict;
- the CRM still holds what the file said last time: the file's value is stored;
- otherwise the CRM's value was changed since (or never imported): it stays and the
  conflict is reported - unless --overwrite, which stores the file's value.

A conflict is reported again on every import until the file carries the CRM's value or
--overwrite is given: the record remembers the file's value as last imported either way.

The tenant's order of lead statuses is one such field (`common_order`, `arranged`): only
the statuses the file names and the CRM holds are compared, so one added or deleted on
either side is no change of order.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from crm_mailer.directory.report import Action, ImportReport, ReportLine, shown


class Never(enum.Enum):
    """No value was ever imported into this field: the CRM set it."""

    NEVER = "never"


NEVER = Never.NEVER
_OWN: Any = object()  # `last` not given: the record's own last imported value
CHANGED_IN_CRM = "changed in the CRM since the last import"
NEVER_IMPORTED = "set in the CRM, never imported"
T = TypeVar("T", bound=Hashable)


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


@dataclass(frozen=True, slots=True)
class Ref:
    """A value compared by what it refers to and shown by its label: a lead status the file
    knows by its imported name while the CRM shows a new one, or an order of statuses."""

    key: Any
    label: str = field(compare=False)

    def __str__(self) -> str:
        return self.label


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


def common_order(file: Sequence[T], current: Sequence[T], last: Sequence[T] | Never
                 ) -> tuple[tuple[T, ...], tuple[T, ...], tuple[T, ...] | Never]:
    """The file's order, the CRM's and the last imported one, each of only what the file
    names and the CRM holds: what one side added or deleted is no change of order."""
    both = set(file) & set(current)

    def only(order: Sequence[T]) -> tuple[T, ...]:
        return tuple(item for item in order if item in both)
    return only(file), only(current), NEVER if last is NEVER else only(last)


def arranged(current: Sequence[T], file: Sequence[T], *, follow_file: bool) -> list[T]:
    """Everything in `current` and `file`, in its new order.

    With `follow_file`, what both hold takes the file's order, in the places it holds now;
    otherwise it stays as it is. What only the CRM holds keeps its place; what only the
    file names (new) comes after everything the file puts before it, or first.
    """
    order = list(current)
    named = set(file)
    if follow_file:
        held = set(current)
        slots = [index for index, item in enumerate(order) if item in named]
        for index, item in zip(slots, [item for item in file if item in held], strict=True):
            order[index] = item
    placed = set(order)
    for number, item in enumerate(file):
        if item not in placed:
            before = set(file[:number])
            order.insert(max((index + 1 for index, other in enumerate(order)
                              if other in before), default=0), item)
            placed.add(item)
    return order


class RecordMerge:
    """The fields of one record that exists already, merged one by one, then reported."""

    def __init__(self, tenant: str, record: str, imported: Mapping[str, Any] | None, *,
                 overwrite: bool) -> None:
        self.tenant, self.record, self.overwrite = tenant, record, overwrite
        self.imported = imported
        self.decisions: dict[str, Decision] = {}
        self.replaced: list[str] = []  # lists only the file sets (domains, hosts): replaced

    def last(self, name: str, current: Any) -> Any:
        """The file's value as last imported; records from before 0005 ({}) count as
        imported as they are now."""
        if self.imported is None:
            return NEVER
        return self.imported.get(name, current)

    def follow(self, name: str, file: Any, current: Any) -> Any:
        """A field only the file sets (nothing in the CRM changes it): the file's value."""
        return self.field(name, file, current, last=current)

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
