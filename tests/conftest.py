from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apikeys.services import apikey_create
from emails.delivery import smtp
from tests.factories import AgencyFactory, UserFactory
from tests.smtp_peer import SmtpPeer


@dataclass
class KeyedClient:
    """An API client authenticated with a fresh live key of ``user``'s agency."""

    client: APIClient
    user: object
    key: object
    plaintext: str

    @property
    def agency(self):
        return self.user.agency


def _keyed_client(user, **key_options) -> KeyedClient:
    created = apikey_create(owner=user, label="test", **key_options)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    return KeyedClient(client=client, user=user, key=created.key, plaintext=created.plaintext)


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
def agency(db):
    return AgencyFactory(domain="hdb.gov.sg", name="Housing Board")


@pytest.fixture
def owner(agency):
    return UserFactory(agency=agency, email="alice@hdb.gov.sg")


@pytest.fixture
def api(owner) -> KeyedClient:
    """The owner's client: the agency that owns the data under test."""
    return _keyed_client(owner)


@pytest.fixture
def teammate_api(agency) -> KeyedClient:
    return _keyed_client(UserFactory(agency=agency, email="bob@hdb.gov.sg"))


@pytest.fixture
def outsider_api(db) -> KeyedClient:
    """A client of another agency: it must never see the owner's data (404)."""
    other = AgencyFactory(domain="mom.gov.sg", name="Manpower")
    return _keyed_client(UserFactory(agency=other, email="mallory@mom.gov.sg"))


@pytest.fixture
def keyed_client_for():
    return _keyed_client


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Attachments written by any test go under its own directory, never the developer's var/."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"
