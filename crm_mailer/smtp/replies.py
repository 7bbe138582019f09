"""Every SMTP reply crm_mailer gives, by name (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

S250_OK = "250 2.0.0 OK"
S250_RCPT_OK = "250 2.1.5 OK"
S250_FILED = "250 2.0.0 Message accepted and filed"
S250_QUEUED = "250 2.0.0 Message accepted, waiting for confirmation"
S250_DUPLICATE = "250 2.0.0 Message already received"
# Issue 9, rule 8: an auto-reply, a report or list traffic; whether it was kept or dropped
# is no business of the sending machine, and a refusal would only make a bounce.
S250_MACHINE_MAIL = "250 2.0.0 Message accepted; machine mail is not filed"
S421_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
S451_STORAGE = "451 4.3.0 Temporary storage failure, try again later"
S451_INTERNAL = "451 4.3.0 Temporary local error, try again later"
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
S550_UNKNOWN_RECIPIENT = "550 5.1.1 Recipient address rejected: not a CRM mailbox here"
S550_SENDER_NOT_AUTHORIZED = "550 5.7.1 Sender is not authorized to file mail for this CRM"
S550_NO_VALID_RECIPIENT = "550 5.1.1 No valid recipient left for this message"

# The DATA phase (crm_mailer reads DATA itself to keep the message in one buffer).
S354_START_DATA = "354 End data with <CR><LF>.<CR><LF>"
S501_DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
S503_NEED_RCPT = "503 5.5.1 Error: need RCPT command"
S500_LINE_TOO_LONG = "500 5.6.0 Line too long for this system (max_line_length)"
S552_MESSAGE_TOO_BIG = "552 5.3.4 Message too big for this system (max_message_size)"

# Access and resources at the SMTP edge (issue 7).
S554_NETWORK_NOT_ALLOWED = "554 5.7.1 Your network is not allowed to deliver mail here"
S421_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
S421_TOO_MANY_CONNECTIONS_FROM_CLIENT = ("421 4.7.0 Too many connections from your address, "
                                         "try again later")
S530_STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
S421_COMMAND_TIMEOUT = "421 4.4.2 Timeout: no command received in time, closing connection"
S421_DATA_TIMEOUT = "421 4.4.2 Timeout: message data not received in time, closing connection"
S451_BUSY = "451 4.3.2 Too many messages in progress, try again later"
# Issue 7: what is kept though it could not be read, and what is refused for good.
S250_UNPROCESSABLE = ("250 2.0.0 Message accepted and kept; it could not be processed "
                      "and waits for a person")
S451_NO_TENANT_YET = "451 4.3.0 No tenant is configured here yet, try again later"
S501_BAD_SENDER = "501 5.1.7 Sender address is not a valid mail address"
S501_BAD_RECIPIENT = "501 5.1.3 Recipient address is not a valid mail address"


def refusal(code: str, text: str) -> str:
    """A permanent reply with our own explanation, reduced to printable ASCII on one line."""
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)[:400]
    return f"{code} {safe}"
