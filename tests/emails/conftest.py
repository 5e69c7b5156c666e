from __future__ import annotations

import pytest

from emails.delivery import smtp
from tests.emails.dns_server import DnsServer
from tests.queue import purge_queue
from tests.smtp_peer import SmtpPeer


@pytest.fixture
def smtp_peer(settings):
    """A running SMTP peer that the delivery settings point at, with a fresh relay connection."""
    peer = SmtpPeer()
    peer.start()
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = peer.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    # The worker's connection is module-level: never carry one over from another test.
    smtp.close_connection()
    yield peer
    smtp.close_connection()
    peer.stop()


@pytest.fixture
def empty_queue():
    """django-q2's queue emptied before the test (with Redis it outlives the test database)."""
    purge_queue()


@pytest.fixture
def dns_server(settings):
    """A running local DNS server (tests/emails/dns_server.py) that the sender domain checks use;
    add records with ``dns_server.add_txt(name, value)`` or ``dns_server.publish(records)``."""
    server = DnsServer()
    server.start()
    settings.DNS_NAMESERVERS = [server.address]
    settings.DNS_TIMEOUT = 1.0
    yield server
    server.stop()
