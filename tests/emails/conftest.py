from __future__ import annotations

import pytest

from emails.delivery import smtp
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
def media_root(settings, tmp_path):
    """Attachments stored under the test's own directory, never the developer's var/."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"
