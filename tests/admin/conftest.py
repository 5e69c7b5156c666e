from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("sam.staff@postman.gov.sg", "correct horse battery")


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def limited_staff(db) -> User:
    """A staff member with no model permissions at all (not a superuser)."""
    return User.objects.create_user("lee.staff@postman.gov.sg", "pw", is_staff=True)
