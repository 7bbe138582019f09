"""The lead library the main app calls: leads, statuses, planned revenues, pipeline sums.

Every call is scoped to one tenant: a number, key or email of another tenant is "not
found", never touched. Calls do not commit (the caller owns the transaction), but each
mutating call is atomic on its own: it changes everything it was asked to, or nothing.
"""

from crm_mailer.leads.library import UNSET, LeadLibrary, LeadView, Unset
from crm_mailer.leads.pipeline_sums import PipelineRow, pipeline_sums
from crm_mailer.leads.scope import TenantScope, tenant_scope

__all__ = ["UNSET", "LeadLibrary", "LeadView", "PipelineRow", "TenantScope", "Unset",
           "pipeline_sums", "tenant_scope"]
