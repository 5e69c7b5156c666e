from __future__ import annotations

import pytest

from tests.emails.dns_server import DnsServer
from tests.queue import purge_queue


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
