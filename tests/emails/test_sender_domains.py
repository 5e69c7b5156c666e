"""Sender domains: adding one, the records to publish, and the DNS checks against a real local
DNS server (tests/emails/dns_server.py), through the grace period to suspension and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django_q.models import Schedule

from accounts.audit import Actor
from accounts.models import AuditEvent, User
from emails import dkim
from emails.dns import parse_nameserver
from emails.models import Email, SenderDomain
from emails.sender_tasks import check_sender_domain
from emails.services.sender_domains import (
    CHECK_TASK,
    SenderDomainError,
    sender_domain_add,
    sender_domain_approve,
    sender_domain_check,
    sender_domain_records,
    sender_domain_remove,
    sender_domain_suspend,
    sender_domains_check_all,
)
from tests.factories import AgencyFactory, UserFactory
from tests.queue import queued_tasks

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
DOMAIN = "notify.hdb.gov.sg"
Status = SenderDomain.Status
Check = SenderDomain.Check


def add(agency, domain: str = DOMAIN, user: User | None = None) -> SenderDomain:
    actor = Actor.of(user) if user else Actor.system()
    return sender_domain_add(agency=agency, domain=domain, actor=actor)


def records_by_purpose(domain: SenderDomain) -> dict:
    return {record.purpose: record for record in sender_domain_records(domain)}


def check(domain: SenderDomain, **kwargs) -> SenderDomain:
    return sender_domain_check(domain=domain, **kwargs).domain


@pytest.fixture
def verified(agency, owner, dns_server) -> SenderDomain:
    """A verified domain whose four records are published."""
    domain = add(agency, user=owner)
    dns_server.publish(sender_domain_records(domain))
    with time_machine.travel(NOW, tick=False):
        domain = check(domain)
    assert domain.status == Status.VERIFIED
    return domain


# -- adding -------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_adding_a_domain_generates_a_token_a_dated_selector_and_an_encrypted_key(agency, owner):
    domain = add(agency, " Notify.HDB.gov.sg. ", user=owner)

    assert domain.domain == DOMAIN
    assert domain.status == Status.PENDING
    assert domain.dkim_selector == "pm202611"
    assert len(domain.ownership_token) == 32
    assert domain.created_by == owner
    # Encrypted at rest: the row holds no PEM, and only the configured secret opens it.
    assert "PRIVATE KEY" not in domain.dkim_private_key
    assert dkim.decrypt_private_key(domain.dkim_private_key).startswith(
        "-----BEGIN RSA PRIVATE KEY-----"
    )
    assert DOMAIN in str(domain) and "PRIVATE" not in str(domain)
    event = AuditEvent.objects.get(action="sender_domain.added")
    assert event.agency == agency
    assert event.actor == owner
    assert event.details == {"selector": "pm202611"}


def test_each_domain_gets_its_own_token_and_key(agency):
    first = add(agency, "a.hdb.gov.sg")
    second = add(agency, "b.hdb.gov.sg")

    assert first.ownership_token != second.ownership_token
    assert first.dkim_public_key != second.dkim_public_key


def test_the_key_is_2048_bit_rsa(agency):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    domain = add(agency)
    key = load_pem_private_key(dkim.decrypt_private_key(domain.dkim_private_key).encode(), None)

    assert key.key_size == 2048


@pytest.mark.parametrize(
    "value", ["", "localhost", "not a domain", "-bad.gov.sg", "a..gov.sg", "x" * 250 + ".sg"]
)
def test_it_refuses_an_invalid_domain(agency, value):
    with pytest.raises(SenderDomainError, match="not a valid domain"):
        add(agency, value)

    assert not SenderDomain.objects.exists()


def test_it_refuses_the_services_own_domain(agency):
    with pytest.raises(SenderDomainError, match="service's own"):
        add(agency, "mail.postman.gov.sg")


def test_it_refuses_a_domain_the_agency_already_added(agency):
    add(agency)

    with pytest.raises(SenderDomainError, match="already been added"):
        add(agency, DOMAIN.upper())

    assert SenderDomain.objects.count() == 1


def test_a_domain_verified_by_another_agency_cannot_be_claimed(verified):
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")

    with pytest.raises(SenderDomainError, match="already verified by another agency"):
        add(other, DOMAIN)

    assert list(SenderDomain.objects.values_list("agency", flat=True)) == [verified.agency_id]


def test_a_pending_claim_by_another_agency_does_not_verify_while_the_first_holds_it(
    verified, dns_server
):
    # Added while the first owner's domain was suspended, say, then the owner recovered it.
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    SenderDomain.objects.filter(pk=verified.pk).update(status=Status.PENDING)
    claim = add(other, DOMAIN)
    SenderDomain.objects.filter(pk=verified.pk).update(status=Status.VERIFIED)
    dns_server.publish(sender_domain_records(claim))

    claim = check(claim)

    assert claim.ownership_check == Check.VERIFIED
    assert claim.dkim_check == Check.VERIFIED
    assert claim.status == Status.PENDING
    with pytest.raises(SenderDomainError, match="another agency"):
        sender_domain_approve(domain=claim, actor=Actor.system())


def test_the_records_to_publish(agency):
    domain = add(agency)

    records = records_by_purpose(domain)

    assert [(r.purpose, r.type, r.name, r.required) for r in records.values()] == [
        ("Ownership", "TXT", f"_postman.{DOMAIN}", True),
        ("DKIM", "TXT", f"{domain.dkim_selector}._domainkey.{DOMAIN}", True),
        ("SPF", "TXT", DOMAIN, False),
        ("DMARC", "TXT", f"_dmarc.{DOMAIN}", False),
    ]
    assert records["Ownership"].value == f"postman-verification={domain.ownership_token}"
    assert records["DKIM"].value == f"v=DKIM1; k=rsa; p={domain.dkim_public_key}"
    assert records["SPF"].value == "v=spf1 include:_spf.mail.postman.gov.sg ~all"
    assert records["DMARC"].value == (f"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{DOMAIN}")
    assert all(r.status == Check.UNCHECKED for r in records.values())


def test_the_spf_include_comes_from_the_settings(agency, settings):
    settings.SPF_INCLUDE = "amazonses.com"

    assert records_by_purpose(add(agency))["SPF"].value == "v=spf1 include:amazonses.com ~all"


# -- checking -----------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_a_domain_is_verified_when_its_records_are_published(agency, owner, dns_server):
    domain = add(agency, user=owner)
    dns_server.publish(sender_domain_records(domain))

    domain = check(domain, actor=Actor.of(owner))

    domain.refresh_from_db()
    assert domain.status == Status.VERIFIED
    assert domain.verified_at == NOW
    assert domain.last_checked_at == NOW
    assert [getattr(domain, field) for field in ("ownership_check", "dkim_check")] == [
        Check.VERIFIED,
        Check.VERIFIED,
    ]
    assert (domain.spf_check, domain.dmarc_check) == (Check.VERIFIED, Check.VERIFIED)
    # The DKIM value is longer than one TXT string: the server split it, the check joined it.
    assert len(records_by_purpose(domain)["DKIM"].value) > 255
    event = AuditEvent.objects.get(action="sender_domain.verified")
    assert event.actor == owner
    assert event.details["changes"]["status"] == {"from": "pending", "to": "verified"}
    assert "dkim_private_key" not in str(event.details)


def test_the_records_may_sit_among_other_txt_records(agency, dns_server):
    domain = add(agency)
    records = records_by_purpose(domain)
    dns_server.add_txt(DOMAIN, "google-site-verification=abc")
    dns_server.add_txt(DOMAIN, "v=spf1 ip4:192.0.2.1 include:_spf.mail.postman.gov.sg -all")
    dns_server.add_txt(records["Ownership"].name, "another-token=1")
    dns_server.add_txt(records["Ownership"].name, records["Ownership"].value)
    # Folded the way some providers show it: whitespace inside p= does not count.
    key = domain.dkim_public_key
    dns_server.add_txt(records["DKIM"].name, f"v=DKIM1;k=rsa; p={key[:100]} {key[100:]}")
    dns_server.add_txt(records["DMARC"].name, "v=DMARC1; p=reject")

    domain = check(domain)

    assert domain.status == Status.VERIFIED
    assert (domain.spf_check, domain.dmarc_check) == (Check.VERIFIED, Check.VERIFIED)


@pytest.mark.parametrize(
    ("purpose", "value", "field", "expected"),
    [
        ("Ownership", None, "ownership_check", Check.MISSING),
        ("Ownership", "postman-verification=someone-else", "ownership_check", Check.WRONG),
        ("DKIM", None, "dkim_check", Check.MISSING),
        ("DKIM", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCg", "dkim_check", "wrong"),
        ("DKIM", "v=DKIM1; k=ed25519; p={key}", "dkim_check", Check.WRONG),
    ],
)
def test_a_missing_or_wrong_required_record_keeps_the_domain_pending(
    agency, dns_server, purpose, value, field, expected
):
    domain = add(agency)
    for record in sender_domain_records(domain):
        if record.purpose != purpose:
            dns_server.add_txt(record.name, record.value)
        elif value is not None:
            dns_server.add_txt(record.name, value.format(key=domain.dkim_public_key))

    domain = check(domain)

    assert getattr(domain, field) == expected
    assert domain.status == Status.PENDING
    assert domain.verified_at is None
    assert domain.last_checked_at is not None


@pytest.mark.parametrize(
    ("purpose", "values", "field", "expected"),
    [
        ("SPF", [], "spf_check", Check.MISSING),
        ("SPF", ["v=spf1 include:_spf.google.com ~all"], "spf_check", Check.WRONG),
        (
            "SPF",
            ["v=spf1 include:_spf.mail.postman.gov.sg ~all", "v=spf1 -all"],
            "spf_check",
            Check.WRONG,
        ),
        ("DMARC", [], "dmarc_check", Check.MISSING),
        ("DMARC", ["v=DMARC1; p=sometimes"], "dmarc_check", Check.WRONG),
    ],
)
def test_spf_and_dmarc_are_reported_but_do_not_block_verification(
    agency, dns_server, purpose, values, field, expected
):
    domain = add(agency)
    for record in sender_domain_records(domain):
        for value in values if record.purpose == purpose else [record.value]:
            dns_server.add_txt(record.name, value)

    domain = check(domain)

    assert getattr(domain, field) == expected
    assert domain.status == Status.VERIFIED


def test_a_name_that_exists_without_txt_is_missing(agency, dns_server):
    domain = add(agency)
    dns_server.other_names.add(f"_postman.{DOMAIN}")

    assert check(domain).ownership_check == Check.MISSING


@pytest.mark.parametrize("trouble", ["silent", "failing"])
def test_an_unanswered_lookup_leaves_that_records_status_as_it_was(verified, dns_server, trouble):
    dkim_name = records_by_purpose(verified)["DKIM"].name
    getattr(dns_server, trouble).add(dkim_name)
    dns_server.remove(f"_postman.{DOMAIN}")
    later = NOW + timedelta(days=1)

    # Not time-travelled: a frozen clock would never let the look-up time out.
    result = sender_domain_check(domain=verified, now=later)

    assert result.unavailable == [dkim_name]
    domain = result.domain
    assert domain.dkim_check == Check.VERIFIED  # unknown: kept
    assert domain.ownership_check == Check.MISSING  # answered: updated
    assert domain.last_checked_at == later
    event = AuditEvent.objects.filter(agency=verified.agency).latest("id")
    assert event.details["unavailable"] == [dkim_name]


def test_when_nothing_answers_nothing_changes(verified, dns_server):
    for record in sender_domain_records(verified):
        dns_server.failing.add(record.name)
    events = AuditEvent.objects.count()

    result = sender_domain_check(domain=verified, now=NOW + timedelta(days=1))

    assert len(result.unavailable) == 4
    assert result.domain.status == Status.VERIFIED
    assert result.domain.last_checked_at == NOW
    assert AuditEvent.objects.count() == events


def test_a_check_that_changes_nothing_is_not_audited(verified):
    events = AuditEvent.objects.count()

    check(verified)

    assert AuditEvent.objects.count() == events


# -- grace period, suspension, recovery -------------------------------------------------------


def notifications(agency) -> list[Email]:
    return list(Email.objects.filter(agency=agency, tag="Sender domain").order_by("id"))


def test_a_failing_domain_gets_72_hours_and_emails_before_suspension(verified, dns_server):
    agency = verified.agency
    UserFactory(agency=agency, email="admin2@hdb.gov.sg", role=User.Role.ADMIN)
    UserFactory(agency=agency, email="member@hdb.gov.sg", role=User.Role.MEMBER)
    dns_server.remove(records_by_purpose(verified)["DKIM"].name)
    failed_at = NOW + timedelta(days=1)

    domain = check(verified, now=failed_at)

    assert domain.status == Status.FAILING
    assert domain.failing_since == failed_at
    [warning] = notifications(agency)
    assert warning.recipient == "admin2@hdb.gov.sg"
    assert warning.cc == ["alice@hdb.gov.sg"]  # the admins, not the member
    assert warning.subject == f"Action needed: the DNS records of {DOMAIN} are failing"
    assert "suspended on 24 November 2026" in warning.html
    assert AuditEvent.objects.filter(action="sender_domain.failing").count() == 1

    # Still within the grace period: still failing, no new email.
    domain = check(domain, now=failed_at + timedelta(hours=71, minutes=59))
    assert domain.status == Status.FAILING
    assert domain.failing_since == failed_at
    assert len(notifications(agency)) == 1

    domain = check(domain, now=failed_at + timedelta(hours=72))

    assert domain.status == Status.SUSPENDED
    assert domain.failing_since == failed_at
    assert [email.subject for email in notifications(agency)][1] == (
        f"Sender domain {DOMAIN} has been suspended"
    )
    assert AuditEvent.objects.filter(action="sender_domain.suspended").count() == 1


def test_a_failing_domain_that_recovers_is_verified_again(verified, dns_server):
    dkim_record = records_by_purpose(verified)["DKIM"]
    dns_server.remove(dkim_record.name)
    domain = check(verified, now=NOW + timedelta(days=1))
    dns_server.publish([dkim_record])

    domain = check(domain, now=NOW + timedelta(days=2))

    assert domain.status == Status.VERIFIED
    assert domain.failing_since is None
    assert domain.verified_at == NOW
    assert AuditEvent.objects.filter(action="sender_domain.recovered").count() == 1


def test_a_domain_suspended_after_the_grace_period_recovers_when_fixed(verified, dns_server):
    dkim_record = records_by_purpose(verified)["DKIM"]
    dns_server.remove(dkim_record.name)
    domain = check(verified, now=NOW + timedelta(days=1))
    domain = check(domain, now=NOW + timedelta(days=5))
    assert domain.status == Status.SUSPENDED
    dns_server.publish([dkim_record])

    domain = check(domain, now=NOW + timedelta(days=6))

    assert domain.status == Status.VERIFIED


def test_a_pending_domain_never_fails(agency, dns_server):
    domain = check(add(agency))

    assert domain.status == Status.PENDING
    assert domain.failing_since is None
    assert notifications(agency) == []


# -- staff --------------------------------------------------------------------------------------


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("ops@postman.gov.sg", is_staff=True)


def test_staff_suspension_is_not_lifted_by_a_passing_check(verified, staff):
    domain = sender_domain_suspend(domain=verified, actor=Actor.of(staff))
    assert domain.status == Status.SUSPENDED
    assert [email.subject for email in notifications(verified.agency)] == [
        f"Sender domain {DOMAIN} has been suspended"
    ]

    domain = check(domain)

    assert domain.status == Status.SUSPENDED
    event = AuditEvent.objects.get(action="sender_domain.suspended")
    assert event.actor_kind == AuditEvent.ActorKind.STAFF
    assert event.details == {"from": "verified", "by": "staff"}

    domain = sender_domain_approve(domain=domain, actor=Actor.of(staff))
    assert domain.status == Status.VERIFIED
    assert AuditEvent.objects.get(action="sender_domain.approved").actor == staff


def test_staff_can_approve_a_pending_domain(agency, staff):
    domain = sender_domain_approve(domain=add(agency), actor=Actor.of(staff))

    assert domain.status == Status.VERIFIED
    assert domain.verified_at is not None


def test_removing_a_domain_is_audited(agency, owner):
    domain = add(agency)

    sender_domain_remove(domain=domain, actor=Actor.of(owner))

    assert not SenderDomain.objects.exists()
    event = AuditEvent.objects.get(action="sender_domain.removed")
    assert event.target_repr == DOMAIN
    assert event.agency == agency


# -- the daily job ------------------------------------------------------------------------------


def test_the_daily_check_is_scheduled_by_a_migration():
    schedule = Schedule.objects.get(name="emails.sender_domain_checks")

    assert schedule.func == "emails.sender_tasks.check_all_sender_domains"
    assert schedule.schedule_type == Schedule.DAILY


def test_the_daily_job_queues_one_check_per_domain_but_staff_suspended_ones(
    agency, staff, empty_queue
):
    pending = add(agency, "a.hdb.gov.sg")
    grace_suspended = add(agency, "b.hdb.gov.sg")
    SenderDomain.objects.filter(pk=grace_suspended.pk).update(
        status=Status.SUSPENDED, failing_since=NOW
    )
    staff_suspended = add(agency, "c.hdb.gov.sg")
    sender_domain_suspend(domain=staff_suspended, actor=Actor.system())

    assert sender_domains_check_all() == 2

    queued = [task["args"][0] for task in queued_tasks() if task["func"] == CHECK_TASK]
    assert queued == [pending.pk, grace_suspended.pk]
    assert staff_suspended.pk not in queued


def test_the_check_task_checks_the_domain(agency, dns_server):
    domain = add(agency)
    dns_server.publish(sender_domain_records(domain))

    check_sender_domain(domain.pk)
    check_sender_domain(domain.pk + 1000)  # removed since it was queued: nothing to do

    domain.refresh_from_db()
    assert domain.status == Status.VERIFIED


# -- resolver configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address", "port"),
    [
        ("10.0.0.53", "10.0.0.53", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("::1", "::1", 53),
        ("[fd00::53]:5300", "fd00::53", 5300),
    ],
)
def test_dns_nameservers_take_an_address_and_an_optional_port(value, address, port):
    server = parse_nameserver(value)

    assert (server.address, server.port) == (address, port)


@pytest.mark.parametrize("value", ["dns.example.org", "10.0.0.1:x", "10.0.0.1:70000", "[::1]x"])
def test_a_bad_dns_nameserver_is_a_configuration_error(value):
    with pytest.raises(ImproperlyConfigured, match="DNS_NAMESERVERS"):
        parse_nameserver(value)


def test_the_checks_ask_the_configured_server(agency, dns_server):
    domain = add(agency)

    check(domain)

    assert (f"_postman.{DOMAIN}", "TXT") in dns_server.queries
    assert (f"{domain.dkim_selector}._domainkey.{DOMAIN}", "TXT") in dns_server.queries
