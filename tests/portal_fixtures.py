"""Fixtures of the portal's view tests: the owner (an admin), a teammate (a member of the same
agency) and an outsider (an admin of another agency), each with a logged-in client.

Imported by tests/accounts/conftest.py and tests/portal/conftest.py."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from tests.factories import AgencyFactory, UserFactory


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def teammate(agency) -> User:
    return UserFactory(agency=agency, email="bob@hdb.gov.sg", role=User.Role.MEMBER)


@pytest.fixture
def other_agency(db):
    return AgencyFactory(domain="mom.gov.sg", name="Manpower")


@pytest.fixture
def outsider(other_agency) -> User:
    return UserFactory(agency=other_agency, email="mallory@mom.gov.sg", role=User.Role.ADMIN)


@pytest.fixture
def owner_client(owner) -> Client:
    return logged_in(owner)


@pytest.fixture
def teammate_client(teammate) -> Client:
    return logged_in(teammate)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return logged_in(outsider)
