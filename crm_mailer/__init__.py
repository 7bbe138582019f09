"""crm_mailer: files mail sent with crm@<tenant host> in BCC/CC into the CRM's contact history."""

__version__ = "0.1.0"
