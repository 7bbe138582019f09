"""The confirmation queue the main app reads: show, confirm, correct, reject, rematch, expire."""

from crm_mailer.reconciliation.queue import ReconciliationQueue, RematchReport, expire_pending

__all__ = ["ReconciliationQueue", "RematchReport", "expire_pending"]
