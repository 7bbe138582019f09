"""Every SMTP reply crm_mailer gives, by name (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

S250_OK = "250 2.0.0 OK"
S250_RCPT_OK = "250 2.1.5 OK"
S250_FILED = "250 2.0.0 Message accepted and filed"
S250_QUEUED = "250 2.0.0 Message accepted, waiting for confirmation"
S250_DUPLICATE = "250 2.0.0 Message already received"
S421_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
S451_STORAGE = "451 4.3.0 Temporary storage failure, try again later"
S451_INTERNAL = "451 4.3.0 Temporary local error, try again later"
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
S550_UNKNOWN_RECIPIENT = "550 5.1.1 Recipient address rejected: not a CRM mailbox here"
S550_SENDER_NOT_AUTHORIZED = "550 5.7.1 Sender is not authorized to file mail for this CRM"
S550_NO_VALID_RECIPIENT = "550 5.1.1 No valid recipient left for this message"
