"""All of crm_mailer's own errors: one base, each docstring is its default message."""

from __future__ import annotations


class CrmMailerError(Exception):
    """crm_mailer failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(CrmMailerError):
    """The configuration is invalid."""


class DirectoryImportError(CrmMailerError):
    """The directory file could not be imported; nothing was changed."""


class StorageUnavailable(CrmMailerError):
    """The database cannot be reached or failed; the operation may be retried later."""


class SchemaOutdated(CrmMailerError):
    """The database schema is not up to date: run `crm-mailer db upgrade`."""


class NotFound(CrmMailerError):
    """The requested record does not exist for this tenant."""


class InvalidRequest(CrmMailerError):
    """The request is not valid; nothing was changed."""


class Conflict(CrmMailerError):
    """The request conflicts with the current state; nothing was changed."""


class MessageRefused(CrmMailerError):
    """The message is refused for good; the text says why and goes to the client."""


class MessageTooLarge(MessageRefused):
    """The message exceeds a size limit."""


class MessageMalformed(MessageRefused):
    """The message's structure exceeds a limit or cannot be read safely."""


class SenderNotProven(MessageRefused):
    """The sender is not proven as the tenant's policy requires."""


class SenderNotAuthorized(MessageRefused):
    """Sender is not authorized to file mail for this CRM."""
