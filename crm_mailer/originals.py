"""The original of filed or waiting mail: its bytes as received, and its attachments.

The main app calls these with the tenant's id; a history entry or queue item of another
tenant is not found, as if it did not exist.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db import repositories
from crm_mailer.db.models import HistoryEntry, InboundMessage, PendingMatch, fits
from crm_mailer.errors import NotFound
from crm_mailer.mail.parse import Attachment, attachment_contents
from crm_mailer.numbers import is_digits


@dataclass(frozen=True, slots=True)
class AttachedFile:
    index: int  # 1-based, in the order the mail lists them
    filename: str | None
    content_type: str
    size: int
    content: bytes

    def as_json(self) -> dict[str, object]:
        return {"index": self.index, "filename": self.filename,
                "content_type": self.content_type, "size": self.size}


async def _message(session: AsyncSession, tenant_id: int, kind: str,
                   item_id: int) -> InboundMessage:
    model = HistoryEntry if kind == "history entry" else PendingMatch
    found = None
    if fits(model.id, item_id):
        found = await session.scalar(
            select(InboundMessage).join(model, model.inbound_message_id == InboundMessage.id)
            .where(model.id == item_id, model.tenant_id == tenant_id,
                   InboundMessage.tenant_id == tenant_id))
    if found is None:
        raise NotFound(f"no {'pending mail' if model is PendingMatch else kind} {item_id}")
    return found


async def raw_of_entry(session: AsyncSession, tenant_id: int, entry_id: int) -> bytes:
    """The original message of a contact-history entry, byte for byte as received."""
    return await repositories.raw_message(
        session, await _message(session, tenant_id, "history entry", entry_id))


async def raw_of_pending(session: AsyncSession, tenant_id: int, pending_id: int) -> bytes:
    """The original message of a queue item (waiting or decided)."""
    return await repositories.raw_message(
        session, await _message(session, tenant_id, "pending mail", pending_id))


async def attachments_of(session: AsyncSession, tenant_id: int, kind: str,
                         item_id: int) -> list[AttachedFile]:
    """The attachments of an entry (`kind` "history entry") or a queue item ("pending
    mail"), with their bytes. Raises NotFound if the message cannot be read back as it
    was listed when it came in (then only the original is there: raw_of_...)."""
    message = await _message(session, tenant_id, kind, item_id)
    raw = await repositories.raw_message(session, message)
    found = await asyncio.to_thread(attachment_contents, raw)  # parsing is CPU work
    listed = [Attachment(a.get("filename"), str(a.get("content_type")), 0)
              for a in message.attachments or []]
    if [(a.filename, a.content_type) for a, _ in found] != \
            [(a.filename, a.content_type) for a in listed]:
        raise NotFound(f"the attachments of {kind} {item_id} cannot be read back as they "
                       "were listed; the original message has them")
    return [AttachedFile(number, a.filename, a.content_type, len(content), content)
            for number, (a, content) in enumerate(found, 1)]


def choose(files: list[AttachedFile], which: str) -> AttachedFile:
    """An attachment by its 1-based index or its exact file name."""
    for file in files:
        by_index = is_digits(which) and int(which) == file.index
        if which == file.filename or by_index:
            return file
    listed = ", ".join(f"{f.index} {f.filename or '(no name)'}" for f in files) or "none"
    raise NotFound(f"no attachment {which!r} (the attachments: {listed})")
