"""The SMTP edge: a thin aiosmtpd handler and the server around it."""
