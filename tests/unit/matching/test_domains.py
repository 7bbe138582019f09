"""Issue 9, rules 5 and 6: registrable domains and free-mail domains (no database)."""

from __future__ import annotations

import pytest

from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import DirectoryImportError
from crm_mailer.mail.freemail import free_mail_domains, is_free_mail
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Queued
from crm_mailer.matching.facts import Direction
from tests import factories
from tests.unit.matching.test_pipeline import ACME, BOB, LEAD_ACME, facts, run


def test_a_sender_at_a_subdomain_of_a_company_domain_is_that_company_inbound() -> None:
    result = run("AW: Lead 11111", sender="max@vertrieb.acme.com", to=("alice@xyz.de",))
    assert result.findings.direction is Direction.INBOUND
    assert result.findings.company == ACME
    assert result.evidence[0].detail["why"] == (
        "vertrieb.acme.com is a domain of company acme (under acme.com)")


@pytest.mark.parametrize("sender", ["max@notacme.com", "max@acme.com.evil.example",
                                    "max@acmecom", "max@com"])
def test_a_look_alike_domain_is_no_company_domain(sender: str) -> None:
    assert isinstance(run("Lead 11111", sender=sender, to=("alice@xyz.de",)).decision,
                      pipeline.Refused)


def test_a_recipient_at_a_subdomain_gives_the_company_outbound() -> None:
    result = run("Lead 11111", to=("einkauf@eu.acme.com",))
    assert result.findings.company == ACME
    assert isinstance(result.decision, Queued)  # the company is known, the contact is not
    assert result.decision.candidates["companies"] == ["acme"]


def test_a_sender_at_a_subdomain_of_the_tenants_domain_is_outbound() -> None:
    result = run("Lead 11111", sender="alice@vertrieb.xyz.de")
    assert result.findings.direction is Direction.OUTBOUND
    assert result.decision == pipeline.decide.Filed(LEAD_ACME, ACME, BOB, (BOB,))


def test_a_colleague_at_a_subdomain_is_never_the_counterpart() -> None:
    assert facts().is_own_domain("mail.xyz.de")
    result = run("Lead 11111", to=("colleague@mail.xyz.de", "bob@acme.com"))
    assert result.decision == pipeline.decide.Filed(LEAD_ACME, ACME, BOB, (BOB,))


@pytest.mark.parametrize("domain", ["gmail.com", "gmx.de", "web.de", "outlook.com",
                                    "t-online.de", "GMX.net", "mx.gmx.de"])
def test_the_shipped_list_knows_the_common_free_mail_domains(domain: str) -> None:
    assert is_free_mail(domain)


@pytest.mark.parametrize("domain", ["acme.com", "notgmail.com", "gmail.com.evil.example"])
def test_a_company_domain_is_no_free_mail_domain(domain: str) -> None:
    assert not is_free_mail(domain)


def directory_with(**company: object) -> str:
    document = factories.directory()
    document["tenants"][0]["companies"][0].update(company)
    return factories.dumps(document)


@pytest.mark.parametrize("domain", ["gmail.com", "GMX.DE", "mail.web.de"])
def test_the_import_refuses_a_free_mail_domain_as_company_domain(domain: str) -> None:
    with pytest.raises(DirectoryImportError) as refused:
        parse_directory(directory_with(domains=["acme.com", domain]))
    assert str(refused.value).startswith(
        f"tenant 'xyz', company 'acme': '{domain.lower()}' is a free-mail domain: it cannot "
        "identify a company")


def test_the_import_refuses_a_free_mail_domain_as_the_tenants_sender_domain() -> None:
    document = factories.directory(sender_domains=["xyz.de", "gmail.com"])
    with pytest.raises(DirectoryImportError, match=r"sender domain 'gmail\.com'.*free-mail"):
        parse_directory(factories.dumps(document))


def test_configured_free_mail_domains_are_refused_too() -> None:
    text = directory_with(domains=["acme.com", "regional-mail.example"])
    assert parse_directory(text)  # not on the shipped list
    with pytest.raises(DirectoryImportError, match=r"'regional-mail\.example' is a free-mail"):
        parse_directory(text, free_mail=free_mail_domains(["Regional-Mail.example"]))


def test_a_contacts_own_free_mail_address_is_still_imported() -> None:
    document = factories.directory(contacts=[
        {"email": "bob.bauer@gmail.com", "name": "Bob", "company": "acme"}])
    document["tenants"][0]["leads"][0]["contact"] = "bob.bauer@gmail.com"
    [spec] = parse_directory(factories.dumps(document))
    assert [c.email for c in spec.contacts] == ["bob.bauer@gmail.com"]
