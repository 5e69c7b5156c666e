"""DKIM signing at delivery: the message the relay (an aiosmtpd peer) receives verifies with
dkimpy against the public key served by the local DNS server, and stops verifying when tampered
with."""

from __future__ import annotations

import email
import email.policy
import logging
import re

import dkim
import pytest
from dkim.util import parse_tag_value

from accounts.audit import Actor
from emails.models import SenderDomain
from emails.services.sender_domains import (
    sender_domain_add,
    sender_domain_check,
    sender_domain_records,
    sender_domain_suspend,
)
from emails.tasks import deliver_email
from tests.factories import AgencyFactory, EmailFactory

pytestmark = pytest.mark.django_db

DOMAIN = "notify.hdb.gov.sg"


@pytest.fixture
def domain(agency, dns_server) -> SenderDomain:
    domain = sender_domain_add(agency=agency, domain=DOMAIN, actor=Actor.system())
    dns_server.publish(sender_domain_records(domain))
    domain = sender_domain_check(domain=domain).domain
    assert domain.status == SenderDomain.Status.VERIFIED
    return domain


def signature_tags(raw: bytes) -> dict[str, str]:
    header = email.message_from_bytes(raw, policy=email.policy.compat32)["DKIM-Signature"]
    tags = parse_tag_value(header.encode())
    # Folding whitespace is not part of a value (RFC 6376 §3.2).
    return {key.decode(): re.sub(r"\s+", "", value.decode()) for key, value in tags.items()}


def deliver(smtp_peer, **fields) -> bytes:
    row = EmailFactory(**fields)
    deliver_email(row.id)
    [received] = smtp_peer.received
    return received.raw


def test_an_email_from_a_verified_domain_is_signed_and_verifies(
    domain, agency, smtp_peer, dns_server
):
    raw = deliver(
        smtp_peer,
        agency=agency,
        sender=f"HDB Alerts <alerts@{DOMAIN}>",
        cc=["carol@example.com"],
        reply_to="help@hdb.gov.sg",
        subject="Your appointment",
    )

    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns_server.dkim_dnsfunc)
    tags = signature_tags(raw)
    assert tags["v"] == "1"
    assert tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    assert tags["d"] == DOMAIN
    assert tags["s"] == domain.dkim_selector
    # Queried from the local server like a receiver would.
    assert (f"{domain.dkim_selector}._domainkey.{DOMAIN}", "TXT") in dns_server.queries


def test_the_signature_covers_the_required_headers(domain, agency, smtp_peer, dns_server):
    raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")

    names = signature_tags(raw)["h"].split(":")
    assert names == [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: Your OTP", b"Subject: Your 0TP"),
        (b"Your OTP is", b"Your 0TP is"),
        (b"To: victim@example.com", b"To: other@example.com"),
    ],
)
def test_a_tampered_message_does_not_verify(domain, agency, smtp_peer, dns_server, old, new):
    raw = deliver(
        smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}", recipient="victim@example.com"
    )
    assert old in raw
    assert dkim.verify(raw, dnsfunc=dns_server.dkim_dnsfunc)

    assert not dkim.verify(raw.replace(old, new, 1), dnsfunc=dns_server.dkim_dnsfunc)


def test_it_does_not_verify_once_the_key_is_gone_from_dns(domain, agency, smtp_peer, dns_server):
    raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")
    dns_server.remove(f"{domain.dkim_selector}._domainkey.{DOMAIN}")

    assert not dkim.verify(raw, dnsfunc=dns_server.dkim_dnsfunc)


def test_a_failing_domain_still_signs(domain, agency, smtp_peer):
    SenderDomain.objects.filter(pk=domain.pk).update(status=SenderDomain.Status.FAILING)

    raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")

    assert raw.startswith(b"DKIM-Signature:")


@pytest.mark.parametrize(
    "sender",
    [
        "Postman <info@mail.postman.gov.sg>",  # the default
        "alerts@hdb.gov.sg",  # the parent domain: not the verified one
        f"alerts@sub.{DOMAIN}",  # a subdomain: not the verified one either
    ],
)
def test_other_senders_are_not_signed(domain, agency, smtp_peer, sender):
    raw = deliver(smtp_peer, agency=agency, sender=sender)

    assert b"DKIM-Signature" not in raw


def test_a_suspended_or_pending_domain_does_not_sign(domain, agency, smtp_peer):
    sender_domain_suspend(domain=domain, actor=Actor.system())

    raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")

    assert b"DKIM-Signature" not in raw


def test_another_agencys_email_is_not_signed_with_the_domains_key(domain, smtp_peer):
    other = AgencyFactory(domain="mom.gov.sg")

    raw = deliver(smtp_peer, agency=other, sender=f"alerts@{DOMAIN}")

    assert b"DKIM-Signature" not in raw


def test_an_unusable_key_sends_unsigned_and_logs_without_the_key(
    domain, agency, smtp_peer, settings, caplog
):
    # The secret that encrypted the key was rotated away without keeping it for decryption.
    settings.DKIM_KEY_ENCRYPTION_KEYS = ["a-new-secret"]

    with caplog.at_level(logging.ERROR, logger="emails.dkim"):
        raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")

    assert b"DKIM-Signature" not in raw
    assert f"DKIM signing for {DOMAIN} failed (InvalidToken)" in caplog.text


def test_keys_survive_a_secret_rotation_that_keeps_the_old_secret(
    domain, agency, smtp_peer, settings, dns_server
):
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-this-test"

    raw = deliver(smtp_peer, agency=agency, sender=f"alerts@{DOMAIN}")

    assert dkim.verify(raw, dnsfunc=dns_server.dkim_dnsfunc)
